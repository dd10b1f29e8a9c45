package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// An error result that merely mentions "No conversation found" (a tool's
// error about a ticket) is the turn's own error: charged, backed off, dead
// after queue.max_attempts — never a lost transcript that wipes the
// conversation in a loop. The same words on stderr do not drop a healthy
// conversation at the next ordinary crash either.
func TestNoConversationWordsAreNotALostTranscript(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	first := d.WaitMessage(d.Send("nina", "hello"), "done", 15*time.Second)
	sid := d.MustSession("nina").SessionID
	m := d.WaitMessage(d.Send("nina", "look up NOCONV please"), "dead", 15*time.Second)
	if m.Failures != 2 {
		t.Errorf("dead after %d failures, want 2", m.Failures)
	}
	s := d.MustSession("nina")
	if s.SessionID != sid {
		t.Errorf("conversation replaced: %s → %s", sid, s.SessionID)
	}
	if ev := d.Events("nina", "resume_failed", ""); len(ev) != 0 {
		t.Errorf("taken for a lost transcript: %v", ev)
	}
	if n := len(d.Invocations()); n > 3 {
		t.Errorf("%d agent starts for one chat, want no restart loop", n)
	}

	d.WaitMessage(d.Send("nina", "NOCONVSTDERR and hello"), "done", 15*time.Second)
	pid := d.MustSession("nina").Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.WaitFor(func() bool { s := d.MustSession("nina"); return s.Pid != 0 && s.Pid != pid }, 10*time.Second, "a new agent")
	last := d.WaitMessage(d.Send("nina", "still there?"), "done", 15*time.Second)
	if s := d.MustSession("nina"); s.SessionID != sid || !strings.Contains(last.Reply, "(turn 3)") {
		t.Errorf("after a crash: session %s (want %s), reply %q (want turn 3); first reply %q", s.SessionID, sid, last.Reply, first.Reply)
	}
}

// An agent that prints one extra result after its real one must not have
// that stray result answer the next turn: the next message is answered by
// its own result.
func TestStrayResultAnswersNothing(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	d.WaitMessage(d.Send("olga", "EXTRA first"), "done", 15*time.Second)
	// the stray result comes 300ms after the real one: this turn is sent
	// before it
	m := d.WaitMessage(d.Send("olga", "second"), "done", 15*time.Second)
	if !strings.Contains(m.Reply, "echo: second (turn 2)") {
		t.Fatalf("second message answered with %q", m.Reply)
	}
	log := filepath.Join(d.StateDir, "logs", "sessions", "olga.log")
	if !daemontest.Poll(func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "agent result that answers no turn dropped")
	}, 5*time.Second) {
		t.Error("the stray result was not logged in the session's log")
	}
}

// A message that kills the agent before it says anything is charged when
// it does so again: it ends dead, the session does not fail, and the
// innocent message behind it is answered.
func TestPreOutputExitGoesDead(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{"health.idle_timeout": "1m"}))
	d.WaitMessage(d.Send("pia", "hello"), "done", 15*time.Second)
	bad := d.Send("pia", "DIE now")
	good := d.Send("pia", "innocent")
	m := d.WaitMessage(bad, "dead", 20*time.Second)
	if m.Failures != 2 {
		t.Errorf("dead message: failures %d, want 2", m.Failures)
	}
	g := d.WaitMessage(good, "done", 20*time.Second)
	if !strings.Contains(g.Reply, "innocent") {
		t.Errorf("innocent reply %q", g.Reply)
	}
	if s := d.MustSession("pia"); s.State == "failed" {
		t.Errorf("session failed: %s", s.HealthReason)
	}
}

// One conversation whose every request times out, while another chat's
// turns succeed: its errors are its own (charged, backed off, dead after
// the limit); the API is not taken for down over and over, and the other
// chat is answered throughout.
func TestStickyTimeoutIsTheChatsOwn(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{"health.idle_timeout": "1m"}))
	d.WaitMessage(d.Send("busy", "warm"), "done", 15*time.Second)
	d.WaitMessage(d.Send("sticky", "warm"), "done", 15*time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var busyIDs []string
	var mu sync.Mutex
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			id := d.Send("busy", "SLEEP=100ms work")
			mu.Lock()
			busyIDs = append(busyIDs, id)
			mu.Unlock()
			d.WaitMessage(id, "done", 15*time.Second)
		}
	})
	m := d.WaitMessage(d.Send("sticky", "STICKY question"), "dead", 20*time.Second)
	close(stop)
	wg.Wait()
	if m.Failures != 2 {
		t.Errorf("sticky message: failures %d, want 2", m.Failures)
	}
	st := d.Status()
	if st.Daemon.Outages > 1 {
		t.Errorf("one chat's timeouts opened the breaker %d times", st.Daemon.Outages)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range busyIDs {
		if m := d.Message(id); m.State != "done" {
			t.Errorf("busy message %s is %s", id, m.State)
		}
	}
}

// When the API hangs for everyone (every turn and probe is silent), the
// messages are held, not charged; when it answers again they are done.
func TestHangingAPIIsNotTheMessages(t *testing.T) {
	base := t.TempDir()
	silent := filepath.Join(base, "silent")
	if err := os.WriteFile(silent, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, opts(map[string]any{
		"agent.env.STUB_SILENT_FILE":      silent,
		"health.stuck_timeout":            "1s",
		"health.first_turn_stuck_timeout": "1s",
		"health.check_interval":           "300ms",
		"health.idle_timeout":             "1m",
	}))
	a := d.Send("quinn", "hello")
	b := d.Send("rosa", "hello")
	d.WaitFor(func() bool {
		return d.Status().Daemon.API == "down" && len(d.Events("quinn", "restart", "silent")) > 0
	}, 20*time.Second, "a silent turn taken for an outage")
	// the API stays hung for a while: held, never charged (the old code
	// charged each stuck turn: dead within about 5s)
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range []string{a, b} {
			if m := d.Message(id); m.Failures != 0 || m.State == "dead" {
				t.Fatalf("message charged for a hanging API: %+v", m)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []string{"quinn", "rosa"} {
		if s := d.MustSession(c); s.State == "failed" {
			t.Errorf("%s failed: %s", c, s.HealthReason)
		}
	}
	if err := os.Remove(silent); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		if m := d.WaitMessage(id, "done", 30*time.Second); m.Failures != 0 {
			t.Errorf("answered message charged: %+v", m)
		}
	}
}

// An agent that ends cleanly (status 0) after each answer never exhausts
// its restart budget.
func TestCleanExitAfterAnswering(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	for i := range 5 {
		d.WaitMessage(d.Send("sam", "EXIT0 "+string(rune('a'+i))), "done", 15*time.Second)
	}
	if s := d.MustSession("sam"); s.State == "failed" {
		t.Fatalf("clean exits failed the session: %s", s.HealthReason)
	}
	d.WaitMessage(d.Send("sam", "still here"), "done", 15*time.Second)
}

// A turn that never ends while the agent keeps writing to stderr is stuck
// past health.max_turn.
func TestMaxTurn(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.stuck_timeout":            "1s",
		"health.first_turn_stuck_timeout": "1s",
		"health.max_turn":                 "2s",
		"health.check_interval":           "300ms",
		"health.idle_timeout":             "1m",
		"restart.max_restarts":            5,
	}))
	d.WaitMessage(d.Send("tom", "warm"), "done", 15*time.Second)
	m := d.WaitMessage(d.Send("tom", "STDERRLOOP forever"), "dead", 30*time.Second)
	if m.Failures != 2 {
		t.Errorf("failures %d, want 2", m.Failures)
	}
	d.WaitMessage(d.Send("tom", "after"), "done", 15*time.Second)
}

// An agent that closed its stdin never got the next message: it is not
// charged (not "stuck"), the agent is restarted and the message answered.
func TestClosedStdinIsUndelivered(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	d.WaitMessage(d.Send("uma", "CLOSEIN first"), "done", 15*time.Second)
	m := d.WaitMessage(d.Send("uma", "second"), "done", 20*time.Second)
	if m.Failures != 0 {
		t.Errorf("an undelivered message was charged: %+v", m)
	}
}

// Two daemons given the same api.socket (different state dirs): the second
// refuses to start, and the first keeps its socket.
func TestSharedSocketIsLocked(t *testing.T) {
	dir, err := os.MkdirTemp("", "sk-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	o := opts(with(noChecks, map[string]any{"api.socket": filepath.Join(dir, "d.sock")}))
	d1 := daemontest.New(t, o)
	d1.Spawn()
	if !daemontest.Poll(func() bool { _, _, code := d1.Run("status"); return code == 0 }, 20*time.Second) {
		t.Fatalf("first daemon not serving on api.socket:\n%s", d1.Output())
	}
	d2 := daemontest.New(t, o)
	d2.Spawn()
	code, exited := d2.Wait(20 * time.Second)
	if !exited || code == 0 {
		t.Fatalf("second daemon on the same api.socket: exited %v, code %d", exited, code)
	}
	if out := d2.Output(); !strings.Contains(out, "in use by another daemon") {
		t.Errorf("second daemon's message does not say why:\n%s", out)
	}
	if _, errOut, code := d1.Run("status"); code != 0 {
		t.Fatalf("first daemon lost its socket: exit %d, %s", code, errOut)
	}
}

// A database removed (or its WAL truncated) under the running daemon is
// detected: accepts are refused with 503, /readyz says not ready, status
// and `dispatch doctor` say what happened.
func TestDeletedDatabaseRefusesAccepts(t *testing.T) {
	for _, tt := range []struct {
		name string
		harm func(db string) error
	}{
		{"removed", func(db string) error {
			for _, f := range []string{db, db + "-wal", db + "-shm"} {
				if err := os.Remove(f); err != nil {
					return err
				}
			}
			return nil
		}},
		{"wal truncated", func(db string) error { return os.Truncate(db+"-wal", 0) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := daemontest.Start(t, opts(noChecks))
			d.WaitMessage(d.Send("vera", "hello"), "done", 15*time.Second)
			if st, body := d.Get("/readyz"); st != 200 {
				t.Fatalf("/readyz before: %d %s", st, body)
			}
			if err := tt.harm(filepath.Join(d.StateDir, "dispatch.db")); err != nil {
				t.Fatal(err)
			}
			st, body := d.Post("/v1/messages", map[string]string{"chat_id": "vera", "text": "into the void"})
			if st != 503 {
				t.Fatalf("POST after the database was %s: %d %s, want 503", tt.name, st, body)
			}
			if st, body := d.Get("/readyz"); st != 503 {
				t.Errorf("/readyz after: %d %s, want 503", st, body)
			}
			if s := d.Status(); s.Daemon.StoreLost == "" || s.Daemon.Healthy {
				t.Errorf("status does not report the lost database: %+v", s.Daemon)
			}
			out, _, code := d.Run("doctor")
			if code == 0 || !strings.Contains(out, "refusing messages") {
				t.Errorf("doctor: exit %d\n%s", code, out)
			}
			if !strings.Contains(d.ManagerLog(), "ALERT: the database was removed, replaced or truncated") {
				t.Error("no alert in the manager log")
			}
		})
	}
}

// An agent that exits cleanly after answering while a child it daemonized
// keeps its output open is not at fault: the message handed over while the
// daemon drains that output is answered by the next agent, uncharged, and
// no restart is counted (found by the fault hunt: 5 counted restarts in 6
// messages, each next turn "undelivered … blame=agent").
func TestCleanExitWithADaemonizedChildIsNotCounted(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	t.Cleanup(func() {
		for _, pid := range d.ChildPids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	for i := range 3 {
		d.WaitMessage(d.Send("dora", fmt.Sprint("DAEMONIZE ", i)), "done", 15*time.Second)
		// sent at once: the agent has exited, its output still held open
		if m := d.WaitMessage(d.Send("dora", fmt.Sprint("next ", i)), "done", 15*time.Second); m.Failures != 0 {
			t.Errorf("a message handed over during the drain was charged: %+v", m)
		}
	}
	if s := d.MustSession("dora"); s.Restarts != 0 || s.State == "failed" {
		t.Fatalf("clean exits counted as faults: restarts %d, state %s (%s)", s.Restarts, s.State, s.HealthReason)
	}
}

// An agent that never reads its input while another chat is answered: its
// turn provably never reached it, so it is restarted and the message
// answered uncharged, neither charged as stuck nor taken for an outage
// (found by the fault hunt: charged and dead).
func TestAgentThatNeverReadsIsRestartedNotCharged(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.stuck_timeout":            "1s",
		"health.first_turn_stuck_timeout": "1s",
		"health.check_interval":           "300ms",
		"health.idle_timeout":             "1m",
	}))
	d.WaitMessage(d.Send("busy", "warm"), "done", 15*time.Second)
	d.WaitMessage(d.Send("ned", "DEAF from now on"), "done", 15*time.Second)
	id := d.Send("ned", "never read")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			d.WaitMessage(d.Send("busy", "SLEEP=100ms work"), "done", 15*time.Second)
		}
	})
	m := d.WaitMessage(id, "done", 30*time.Second)
	close(stop)
	wg.Wait()
	if m.Failures != 0 {
		t.Errorf("a message its agent never read was charged: %+v", m)
	}
	if st := d.Status(); st.Daemon.Outages != 0 {
		t.Errorf("an agent that never reads was taken for an API outage (%d outages)", st.Daemon.Outages)
	}
	if s := d.MustSession("ned"); s.Restarts < 1 {
		t.Errorf("the agent that never reads was not restarted as broken: restarts %d", s.Restarts)
	}
}
