package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestReplyAndStatus: a message sent with `dispatch send --wait` is
// answered by the agent; `status --json` carries every field of the status object
// (docs/reference.md) with sane values; `status` exits 1 once no daemon runs.
func TestReplyAndStatus(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))

	out, errOut, code := d.Run("send", "alice", "hello", "--wait", "--timeout", "30s")
	if code != 0 {
		t.Fatalf("send --wait: exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "hello") || !strings.Contains(out, "(turn 1)") {
		t.Fatalf("send --wait printed %q, want the stub's reply to hello in turn 1", out)
	}

	// Without --wait: the id alone on a line.
	out, errOut, code = d.Run("send", "alice", "second")
	if code != 0 {
		t.Fatalf("send: exit %d, stderr %q", code, errOut)
	}
	id := strings.TrimSpace(out)
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("send printed %q, want an id alone on a line", out)
	}
	if m := d.WaitMessage(id, "done", 15*time.Second); !strings.Contains(m.Reply, "second (turn 2)") {
		t.Fatalf("reply %q, want turn 2 of the same conversation", m.Reply)
	}

	// (the session's counters are published a moment after the reply is stored)
	d.WaitFor(func() bool { s := d.MustSession("alice"); return s.State == "idle" && s.Turns == 2 }, 2*time.Second, "alice idle after 2 turns")
	out, errOut, code = d.Run("status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d, stderr %q", code, errOut)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("status --json is not one JSON object: %v\n%s", err, out)
	}
	requireKeys(t, "status", raw, "daemon", "sessions", "queue")
	daemon := raw["daemon"].(map[string]any)
	requireKeys(t, "daemon", daemon, "pid", "version", "uptime_seconds", "api")
	queue := raw["queue"].(map[string]any)
	requireKeys(t, "queue", queue, "pending", "inflight", "dead")
	sessions := raw["sessions"].([]any)
	if len(sessions) != 1 {
		t.Fatalf("status has %d sessions, want 1: %s", len(sessions), out)
	}
	s := sessions[0].(map[string]any)
	requireKeys(t, "session", s, "chat_id", "state", "alive", "healthy", "health_reason", "busy",
		"error_count", "idle_seconds", "queue_depth", "turns", "restarts", "session_id", "exempt")

	if int(daemon["pid"].(float64)) != d.Pid() {
		t.Errorf("daemon.pid = %v, want %d", daemon["pid"], d.Pid())
	}
	if v, _ := daemon["version"].(string); v == "" {
		t.Errorf("daemon.version is empty")
	}
	if up := daemon["uptime_seconds"].(float64); up <= 0 || up > 120 {
		t.Errorf("daemon.uptime_seconds = %v", up)
	}
	if daemon["api"] != "up" {
		t.Errorf("daemon.api = %v, want up", daemon["api"])
	}
	for k, want := range map[string]float64{"pending": 0, "inflight": 0, "dead": 0} {
		if queue[k] != want {
			t.Errorf("queue.%s = %v, want %v", k, queue[k], want)
		}
	}
	want := map[string]any{
		"chat_id": "alice", "state": "idle", "alive": true, "healthy": true, "health_reason": "ok",
		"busy": false, "error_count": 0.0, "queue_depth": 0.0, "turns": 2.0, "restarts": 0.0, "exempt": false,
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("session.%s = %v, want %v", k, s[k], v)
		}
	}
	if idle := s["idle_seconds"].(float64); idle < 0 || idle > 60 {
		t.Errorf("session.idle_seconds = %v", idle)
	}
	sid, _ := s["session_id"].(string)
	ivs := d.Invocations()
	if sid == "" || len(ivs) != 1 || ivs[0].SessionID() != sid {
		t.Errorf("session_id %q; stub invocations %+v: want one start with --session-id %q", sid, ivs, sid)
	}
	// How the agent CLI is invoked: print mode (-p), stream-json in and
	// out, --verbose, and without CLAUDECODE in its environment.
	if len(ivs) == 1 {
		iv := ivs[0]
		for _, a := range []string{"-p", "--input-format", "--output-format", "--verbose"} {
			if !slices.Contains(iv.Argv, a) {
				t.Errorf("stub argv %q lacks %s", iv.Argv, a)
			}
		}
		if iv.Flag("--input-format") != "stream-json" || iv.Flag("--output-format") != "stream-json" {
			t.Errorf("stub argv %q: want stream-json in and out", iv.Argv)
		}
		if iv.ClaudeCodeSet {
			t.Errorf("CLAUDECODE is set in the agent's environment")
		}
	}

	// The human form works too.
	out, errOut, code = d.Run("status")
	if code != 0 || !strings.Contains(out, "alice") {
		t.Errorf("status: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	if code, took := d.Term(); code != 0 {
		t.Errorf("daemon exit code %d after SIGTERM (took %s), want 0", code, took)
	}
	out, errOut, code = d.Run("status")
	if code != 1 {
		t.Errorf("status with no daemon: exit %d, want 1 (stdout %q, stderr %q)", code, out, errOut)
	}
	if _, _, code := d.Run("status", "--json"); code != 1 {
		t.Errorf("status --json with no daemon: exit %d, want 1", code)
	}
}

func requireKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s object lacks key %q: %v", what, k, m)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestFIFO: 25 messages fired at one chat back to back all end done, and
// they reached the agent in the order they were sent (the stub's saved
// conversation, batches included, lists them in send order; the turn
// numbers of the replies never go down).
func TestFIFO(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	const n = 25
	ids := make([]string, n)
	texts := make([]string, n)
	for i := range n {
		texts[i] = fmt.Sprintf("fifo-%02d", i)
		ids[i] = d.Send("bob", texts[i])
	}
	lastTurn := 0
	for i, id := range ids {
		m := d.WaitMessage(id, "done", 30*time.Second)
		if !strings.Contains(m.Reply, texts[i]) {
			t.Errorf("message %d: reply %q does not contain its text", i, m.Reply)
		}
		var turn int
		if _, err := fmt.Sscanf(m.Reply[strings.LastIndex(m.Reply, "(turn "):], "(turn %d)", &turn); err != nil {
			t.Fatalf("message %d: no turn number in %q", i, m.Reply)
		}
		if turn < lastTurn {
			t.Errorf("message %d answered in turn %d after a message answered in turn %d", i, turn, lastTurn)
		}
		lastTurn = turn
	}
	// The session's counters are published a moment after the store
	// marks the messages done.
	var s supervisor.SessionStatus
	if !daemontest.Poll(func() bool { s = d.MustSession("bob"); return int(s.Turns) == lastTurn && !s.Busy }, 2*time.Second) {
		t.Errorf("session turns = %d (busy %t), last reply in turn %d", s.Turns, s.Busy, lastTurn)
	}
	var got []string
	for _, entry := range d.Conversation(s.SessionID) {
		got = append(got, strings.Split(entry, "\n")...)
	}
	if !slices.Equal(got, texts) {
		t.Fatalf("the agent saw the messages in this order:\n%q\nwant\n%q", got, texts)
	}
	t.Logf("%d messages reached the agent in %d turns", n, lastTurn)
	if st := d.Status(); st.Queue.Pending != 0 || st.Queue.Inflight != 0 || st.Queue.Dead != 0 {
		t.Errorf("queue after all done: %+v", st.Queue)
	}
}

// TestSecondDaemon: a second daemon on the same state dir exits non-zero
// within a second, saying another daemon is running; the first keeps
// serving.
func TestSecondDaemon(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	cmd := d.Cmd("daemon")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		took := time.Since(start)
		if err == nil || cmd.ProcessState.ExitCode() == 0 {
			t.Errorf("second daemon exited 0, want non-zero; output %q", out.String())
		}
		if !strings.Contains(strings.ToLower(out.String()), "another dispatch daemon") {
			t.Errorf("second daemon's message %q does not mention another daemon", out.String())
		}
		if took > time.Second {
			t.Errorf("second daemon took %s to exit, want ≤ 1s", took)
		}
		t.Logf("second daemon exited %d after %s: %s", cmd.ProcessState.ExitCode(), took.Round(time.Millisecond), strings.TrimSpace(out.String()))
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("second daemon still running after 5s; output %q", out.String())
	}
	if !d.Running() {
		t.Fatal("the first daemon died")
	}
	if st, _ := d.Get("/healthz"); st != http.StatusOK {
		t.Errorf("first daemon /healthz = %d", st)
	}
	id := d.Send("carol", "still there?")
	d.WaitMessage(id, "done", 15*time.Second)
}

// TestBadConfig: a config error stops every command with a non-zero exit
// and a message naming the key.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, yaml, key string }{
		{"unknown key", "health:\n  idel_timeout: 1s\n", "health.idel_timeout"},
		{"bad duration", "health:\n  idle_timeout: 2x\n", "health.idle_timeout"},
		{"bare number", "restart:\n  window: 5\n", "restart.window"},
		{"attempts not below restarts", "queue:\n  max_attempts: 3\n", "queue.max_attempts"},
		{"wrong type", "agent:\n  args: nope\n", "agent.args"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte("state_dir: "+filepath.Join(dir, "state")+"\n"+c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"daemon"}, {"status"}} {
				_, errOut, code := daemontest.RunCLI(t, path, args...)
				if code == 0 {
					t.Errorf("%v with a bad config exited 0", args)
				}
				if !strings.Contains(errOut, c.key) {
					t.Errorf("%v: message %q does not name %s", args, errOut, c.key)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Errorf("a daemon with a bad config created its state dir")
	}
}

// TestBadRequests: invalid input gets a 4xx with an "error" field and never
// stops the daemon from serving.
func TestBadRequests(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	big := strings.Repeat("x", 1<<20+1)
	cases := []struct {
		name string
		body any
		want int
	}{
		{"empty chat id", map[string]string{"chat_id": "", "text": "hi"}, 400},
		{"missing chat id", map[string]string{"text": "hi"}, 400},
		{"chat id over 256 bytes", map[string]string{"chat_id": strings.Repeat("c", 257), "text": "hi"}, 400},
		{"control character in chat id", map[string]string{"chat_id": "a\x01b", "text": "hi"}, 400},
		{"newline in chat id", map[string]string{"chat_id": "a\nb", "text": "hi"}, 400},
		{"empty text", map[string]string{"chat_id": "a", "text": ""}, 400},
		{"text over 1 MiB", map[string]string{"chat_id": "a", "text": big}, 413},
		{"invalid JSON", `{"chat_id": "a", "text": `, 400},
		{"not an object", `[1,2,3]`, 400},
		{"two values", `{"chat_id":"a","text":"b"} {"chat_id":"a","text":"c"}`, 400},
		{"unknown field", `{"chat_id":"a","text":"b","bogus":1}`, 400},
		{"body over 8 MiB", `{"chat_id":"a","text":"` + strings.Repeat("y", 9<<20) + `"}`, 413},
	}
	for _, c := range cases {
		st, body := d.Post("/v1/messages", c.body)
		if st != c.want {
			t.Errorf("%s: HTTP %d, want %d (body %.200s)", c.name, st, c.want, body)
		}
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || e["error"] == nil || e["error"] == "" {
			t.Errorf("%s: body %.200q has no \"error\" field", c.name, body)
		}
	}
	// A chat id of exactly 256 bytes and a text of exactly 1 MiB are fine.
	okChat := strings.Repeat("c", 256)
	st, body := d.Post("/v1/messages", map[string]string{"chat_id": okChat, "text": strings.Repeat("z", 1<<20)})
	if st != http.StatusAccepted {
		t.Errorf("256-byte chat id and 1 MiB text: HTTP %d (%.200s), want 202", st, body)
	}
	for _, p := range []string{"/v1/messages/no-such-id", "/v1/nope"} {
		if st, body := d.Get(p); st != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
			t.Errorf("GET %s: HTTP %d %s, want 404 with an error", p, st, body)
		}
	}
	if st, body := d.Get("/v1/queue?state=bogus"); st != http.StatusBadRequest {
		t.Errorf("GET /v1/queue?state=bogus: HTTP %d %s, want 400", st, body)
	}
	if st, body := d.Post("/v1/sessions/kill", map[string]string{"chat_id": ""}); st != http.StatusBadRequest {
		t.Errorf("kill with an empty chat id: HTTP %d %s, want 400", st, body)
	}

	// Nothing bad was stored, and the daemon still serves.
	if q := d.Status().Queue; q.Dead != 0 {
		t.Errorf("queue after bad requests: %+v", q)
	}
	if st, _ := d.Get("/healthz"); st != http.StatusOK {
		t.Errorf("/healthz = %d after bad requests", st)
	}
	id := d.Send("dave", "good message")
	if m := d.WaitMessage(id, "done", 15*time.Second); !strings.Contains(m.Reply, "good message") {
		t.Errorf("reply %q", m.Reply)
	}
	if !d.Running() {
		t.Fatal("daemon died")
	}
}
