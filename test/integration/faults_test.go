package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestCrashRestartResume: an agent killed from outside (kill -9) is noticed
// at once — with the health check an hour away — and started again with
// --resume of the same conversation, which then carries on (turn 2).
func TestCrashRestartResume(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	d.WaitMessage(d.Send("erin", "first"), "done", 15*time.Second)
	before := d.MustSession("erin")
	if before.Pid == 0 || !daemontest.Alive(before.Pid) {
		t.Fatalf("status pid %d is not a live agent", before.Pid)
	}
	sid := before.SessionID

	if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var after supervisor.SessionStatus
	d.WaitFor(func() bool {
		after = d.MustSession("erin")
		return after.Pid != 0 && after.Pid != before.Pid && after.State == "idle"
	}, 10*time.Second, "a new agent after kill -9 of the old one")
	took := time.Since(killed)
	t.Logf("agent killed; new agent up after %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("restart took %s after the agent died; want it noticed at once (≤ 1s)", took)
	}
	if after.SessionID != sid {
		t.Errorf("session_id changed from %s to %s", sid, after.SessionID)
	}
	if after.Restarts != 1 || !after.Healthy || after.HealthReason != "ok" {
		t.Errorf("after the restart: restarts %d, healthy %t (%s); want 1, healthy ok", after.Restarts, after.Healthy, after.HealthReason)
	}
	// the stub logs its argv a moment after it has been started
	var ivs []daemontest.Invocation
	daemontest.Poll(func() bool { ivs = d.InvocationsFor(sid); return len(ivs) >= 2 }, 5*time.Second)
	if len(ivs) != 2 || ivs[0].SessionID() != sid || ivs[1].Resume() != sid || ivs[1].Pid != after.Pid {
		t.Errorf("stub invocations for %s: %+v; want --session-id, then --resume by pid %d", sid, ivs, after.Pid)
	}
	if ev := d.Events("erin", "restart", "dead"); len(ev) != 1 {
		t.Errorf("lifecycle restart lines with reason dead: %v, want 1", ev)
	}

	m := d.WaitMessage(d.Send("erin", "second"), "done", 15*time.Second)
	if !strings.Contains(m.Reply, "second (turn 2)") {
		t.Errorf("reply after the restart %q, want turn 2 of the resumed conversation", m.Reply)
	}
	if got := d.Conversation(sid); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("conversation %s = %q", sid, got)
	}
}

// TestHangStuckRestart: a turn that hangs is marked stuck by the health
// check, its session restarted (lifecycle: restart, reason stuck); after
// queue.max_attempts (2) stuck attempts the message is dead, and the message
// queued behind it is answered.
func TestHangStuckRestart(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.stuck_timeout":            "1s",
		"health.first_turn_stuck_timeout": "1s",
		"health.idle_timeout":             "1m",
		// Longer than one agent stop (stop_grace 200ms), so that a check
		// rarely judges a session whose restart is under way; see
		// TestStaleStuckVerdict for what happens then.
		"health.check_interval": "500ms",
		// Headroom for a spurious "dead" restart of a starting session
		// (see TestStartingSessionNotRestarted).
		"restart.max_restarts": 5,
	}))
	d.WaitMessage(d.Send("frank", "warm up"), "done", 15*time.Second)
	hang := d.Send("frank", "please HANG")
	next := d.Send("frank", "after the hang")

	start := time.Now()
	m := d.WaitMessage(hang, "dead", 30*time.Second)
	t.Logf("hanging message dead after %s: attempts %d, failures %d, error %q",
		time.Since(start).Round(time.Millisecond), m.Attempts, m.Failures, m.Error)
	if m.Failures != 2 || m.Attempts < 2 {
		t.Errorf("dead message: attempts %d, failures %d; want 2 failed attempts", m.Attempts, m.Failures)
	}
	if !strings.Contains(m.Error, "stuck") {
		t.Errorf("dead message error %q does not say stuck", m.Error)
	}
	if stuck := d.Events("frank", "restart", "stuck"); len(stuck) < 2 {
		t.Errorf("lifecycle restart lines with reason stuck: %v, want one per stuck attempt (2)", stuck)
	}
	if ev := d.Events("frank", "dead_letter", hang); len(ev) != 1 {
		t.Errorf("lifecycle dead_letter lines for %s: %v", hang, ev)
	}

	n := d.WaitMessage(next, "done", 15*time.Second)
	if !strings.Contains(n.Reply, "after the hang (turn 2)") {
		t.Errorf("reply %q, want turn 2 of the resumed conversation", n.Reply)
	}
	s := d.MustSession("frank")
	if s.State == "failed" || s.Restarts < 2 {
		t.Errorf("session after the hang: state %s, restarts %d", s.State, s.Restarts)
	}
}

// TestPoisonMessage: a message that crashes the agent goes dead after two
// attempts without failing the session; the next message is answered;
// `queue list --state dead --json` shows it with attempts and error; `queue
// retry` puts it back in line and `queue drop` deletes it (exit 0; exit 1
// for an unknown id).
func TestPoisonMessage(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		// retrying the poison message costs two more restarts
		"restart.max_restarts": 10,
		"health.idle_timeout":  "1m",
	}))
	d.WaitMessage(d.Send("gina", "hello"), "done", 15*time.Second)
	crash := d.Send("gina", "CRASH now")
	m := d.WaitMessage(crash, "dead", 20*time.Second)
	if m.Failures != 2 || m.Attempts < 2 || m.Error == "" {
		t.Errorf("dead message: attempts %d, failures %d, error %q; want 2 failed attempts and an error", m.Attempts, m.Failures, m.Error)
	}
	next := d.WaitMessage(d.Send("gina", "next"), "done", 15*time.Second)
	if !strings.Contains(next.Reply, "next (turn 2)") {
		t.Errorf("reply after the poison message %q, want turn 2", next.Reply)
	}
	s := d.MustSession("gina")
	if s.State == "failed" || !s.Healthy {
		t.Errorf("session after a poison message: state %s, healthy %t (%s)", s.State, s.Healthy, s.HealthReason)
	}
	if ev := d.Events("gina", "dead_letter", crash); len(ev) != 1 {
		t.Errorf("lifecycle dead_letter lines for %s: %v", crash, ev)
	}

	dead := queueList(t, d, "--state", "dead", "--json")
	if len(dead) != 1 {
		t.Fatalf("queue list --state dead: %+v, want the one poison message", dead)
	}
	if q := dead[0]; q.ID != crash || q.ChatID != "gina" || q.State != "dead" || q.Attempts < 2 ||
		q.Error == "" || q.Text != "CRASH now" || q.CreatedAt == "" {
		t.Errorf("dead message listed as %+v", q)
	}
	if l := queueList(t, d, "--chat", "gina", "--state", "dead", "--json"); len(l) != 1 {
		t.Errorf("queue list --chat gina --state dead: %+v", l)
	}
	if l := queueList(t, d, "--chat", "nobody", "--json"); len(l) != 0 {
		t.Errorf("queue list --chat nobody: %+v", l)
	}
	if out, _, code := d.Run("queue", "list"); code != 0 || !strings.Contains(out, crash) {
		t.Errorf("queue list (table): exit %d, %q", code, out)
	}

	for _, args := range [][]string{
		{"queue", "retry", "no-such-id"}, {"queue", "drop", "no-such-id"},
		{"queue", "retry", next.ID}, {"queue", "drop", next.ID}, // not dead
	} {
		if _, errOut, code := d.Run(args...); code != 1 {
			t.Errorf("%v: exit %d (stderr %q), want 1", args, code, errOut)
		}
	}

	// retry: the message goes back in line, crashes twice more and is dead again
	if _, errOut, code := d.Run("queue", "retry", crash); code != 0 {
		t.Fatalf("queue retry: exit %d, %q", code, errOut)
	}
	d.WaitFor(func() bool {
		m2 := d.Message(crash)
		return m2.State == "dead" && m2.Attempts >= m.Attempts+2
	}, 20*time.Second, "the retried poison message to be tried twice more and be dead again")
	if ev := d.Events("gina", "retry", crash); len(ev) != 1 {
		t.Errorf("lifecycle retry lines: %v", ev)
	}

	if _, errOut, code := d.Run("queue", "drop", crash); code != 0 {
		t.Fatalf("queue drop: exit %d, %q", code, errOut)
	}
	if st, body := d.Get("/v1/messages/" + crash); st != 404 {
		t.Errorf("dropped message: HTTP %d %s, want 404", st, body)
	}
	if l := queueList(t, d, "--state", "dead", "--json"); len(l) != 0 {
		t.Errorf("dead messages after drop: %+v", l)
	}
	if _, _, code := d.Run("queue", "drop", crash); code != 1 {
		t.Errorf("second drop: exit %d, want 1", code)
	}
	if ev := d.Events("gina", "drop", crash); len(ev) != 1 {
		t.Errorf("lifecycle drop lines: %v", ev)
	}
	last := d.WaitMessage(d.Send("gina", "still alive"), "done", 15*time.Second)
	if !strings.Contains(last.Reply, "still alive (turn 3)") {
		t.Errorf("reply %q, want turn 3", last.Reply)
	}
	if s := d.MustSession("gina"); s.State == "failed" {
		t.Errorf("session failed: %s", s.HealthReason)
	}
}

func queueList(t *testing.T, d *daemontest.Daemon, args ...string) []api.MessageOut {
	t.Helper()
	out, errOut, code := d.Run(append([]string{"queue", "list"}, args...)...)
	if code != 0 {
		t.Fatalf("queue list %v: exit %d, %q", args, code, errOut)
	}
	var msgs []api.MessageOut
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("queue list %v: not a JSON array: %v\n%s", args, err, out)
	}
	var raw []map[string]any
	_ = json.Unmarshal([]byte(out), &raw)
	for _, r := range raw {
		for _, k := range []string{"id", "chat_id", "state", "attempts", "text", "error", "created_at"} {
			if _, ok := r[k]; !ok {
				t.Errorf("queue list entry lacks %q: %v", k, r)
			}
		}
	}
	return msgs
}

// TestRestartLimit: an agent that dies at once on every start is restarted
// restart.max_restarts times, then its session is failed (unhealthy, a
// failure line in the lifecycle log, no more starts) while its messages
// stay pending; after the agent is fixed, `dispatch sessions restart`
// clears the failure and the messages are answered.
func TestRestartLimit(t *testing.T) {
	_, stub := daemontest.Binaries(t)
	dir := t.TempDir()
	fixed := filepath.Join(dir, "fixed")
	starts := filepath.Join(dir, "starts")
	script := daemontest.WriteScript(t, filepath.Join(dir, "agent.sh"), "#!/bin/sh\n"+
		"echo start >> "+starts+"\n"+
		"if [ -e "+fixed+" ]; then exec "+stub+" \"$@\"; fi\n"+
		"echo 'agent.sh: crash on start' >&2\n"+
		"exit 2\n")
	d := daemontest.Start(t, opts(map[string]any{
		"agent.command":        script,
		"restart.max_restarts": 3,
		"health.idle_timeout":  "1m",
	}))
	countStarts := func() int { return strings.Count(readFile(starts), "start\n") }

	first := d.Send("flappy", "one")
	var s supervisor.SessionStatus
	d.WaitFor(func() bool { s = d.MustSession("flappy"); return s.State == "failed" }, 20*time.Second, "the session to fail")
	if s.Healthy || s.Alive || !strings.HasPrefix(s.HealthReason, "failed") {
		t.Errorf("failed session: healthy %t, alive %t, reason %q", s.Healthy, s.Alive, s.HealthReason)
	}
	if ev := d.Events("flappy", "failure", ""); len(ev) == 0 {
		t.Errorf("no failure line in the lifecycle log")
	}
	if n := countStarts(); n != 4 {
		t.Errorf("agent started %d times, want 1 + restart.max_restarts (3)", n)
	}
	if m := d.Message(first); m.State != "pending" {
		t.Errorf("BUG: a message sent before the session failed is %s after %d attempts (error %q): an agent that dies on start is charged to the message; a failed session's messages stay queued (docs/faults.md)",
			m.State, m.Attempts, m.Error)
	}

	// While failed: new messages wait, nothing restarts it.
	second := d.Send("flappy", "two")
	checks := func() int { return strings.Count(d.ManagerLog(), `msg="health check"`) }
	c0 := checks()
	d.WaitFor(func() bool { return checks() >= c0+3 }, 10*time.Second, "three more health checks")
	if m := d.Message(second); m.State != "pending" {
		t.Errorf("message to a failed session is %s, want pending", m.State)
	}
	if s := d.MustSession("flappy"); s.State != "failed" || s.QueueDepth < 1 {
		t.Errorf("failed session after more checks: state %s, queue_depth %d", s.State, s.QueueDepth)
	}
	if n := countStarts(); n != 4 {
		t.Errorf("a failed session was started again automatically: %d starts", n)
	}
	if !strings.Contains(d.ManagerLog(), "event=failure chat=flappy") {
		t.Errorf("no failure alert in the manager log")
	}

	if err := os.WriteFile(fixed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := d.Run("sessions", "restart", "flappy"); code != 0 {
		t.Fatalf("sessions restart: exit %d, %q %q", code, out, errOut)
	}
	for _, id := range []string{first, second} {
		if d.Message(id).State == "dead" {
			continue // reported above
		}
		d.WaitMessage(id, "done", 15*time.Second)
	}
	daemontest.Poll(func() bool { s = d.MustSession("flappy"); return s.State == "idle" }, 2*time.Second)
	if s.State != "idle" || !s.Healthy || s.HealthReason != "ok" {
		t.Errorf("after the operator restart: state %s, healthy %t (%s)", s.State, s.Healthy, s.HealthReason)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
