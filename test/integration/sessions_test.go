package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestSessionCommands: `sessions list/kill/restart/exempt` act on a session
// (kill keeps the session_id and ends the agent; restart resumes, --clean
// starts a new conversation; exempt sets and clears the flag), kill and
// restart of an unknown chat exit 1; `logs` and `logs CHAT` print lines.
func TestSessionCommands(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	d.WaitMessage(d.Send("alice", "hello"), "done", 15*time.Second)
	s := d.MustSession("alice")
	sid, pid := s.SessionID, s.Pid

	out, errOut, code := d.Run("sessions", "list", "--json")
	if code != 0 {
		t.Fatalf("sessions list --json: exit %d, %q", code, errOut)
	}
	var list []supervisor.SessionStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].ChatID != "alice" {
		t.Errorf("sessions list --json = %q (%v)", out, err)
	}
	if out, _, code := d.Run("sessions", "list"); code != 0 || !strings.Contains(out, "alice") {
		t.Errorf("sessions list: exit %d, %q", code, out)
	}

	// kill
	if out, errOut, code := d.Run("sessions", "kill", "alice"); code != 0 {
		t.Fatalf("sessions kill alice: exit %d, %q %q", code, out, errOut)
	}
	// (the status may lag the answer by a moment: poll)
	d.WaitFor(func() bool { s = d.MustSession("alice"); return s.State == "stopped" }, 2*time.Second, "alice to show stopped")
	if s.State != "stopped" || s.HealthReason != "stopped" || !s.Healthy || s.SessionID != sid || s.Pid != 0 {
		t.Errorf("after kill: %+v; want stopped, healthy, same session_id, no pid", s)
	}
	d.WaitFor(func() bool { return !daemontest.Alive(pid) }, 2*time.Second, "the killed agent to be gone")
	if ev := d.Events("alice", "stop", "operator"); len(ev) != 1 {
		t.Errorf("lifecycle stop lines: %v", ev)
	}
	for _, args := range [][]string{{"sessions", "kill", "nobody"}, {"sessions", "restart", "nobody"}} {
		if _, errOut, code := d.Run(args...); code != 1 || !strings.Contains(errOut, "nobody") {
			t.Errorf("%v: exit %d, stderr %q; want 1 naming the chat", args, code, errOut)
		}
	}

	// restart (resume)
	if out, errOut, code := d.Run("sessions", "restart", "alice"); code != 0 {
		t.Fatalf("sessions restart alice: exit %d, %q %q", code, out, errOut)
	}
	d.WaitFor(func() bool { s = d.MustSession("alice"); return s.State == "idle" }, 2*time.Second, "alice to show idle")
	if s.State != "idle" || s.SessionID != sid || s.Pid == 0 || s.Pid == pid {
		t.Errorf("after restart: %+v", s)
	}
	var ivs []daemontest.Invocation
	daemontest.Poll(func() bool { ivs = d.InvocationsFor(sid); return len(ivs) >= 2 }, 5*time.Second)
	if len(ivs) != 2 || ivs[1].Resume() != sid {
		t.Errorf("invocations %+v, want the restart to --resume %s", ivs, sid)
	}
	r := d.WaitMessage(d.Send("alice", "after restart"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "(turn 2)") {
		t.Errorf("reply %q, want turn 2", r.Reply)
	}

	// restart --clean: a new conversation
	if _, errOut, code := d.Run("sessions", "restart", "alice", "--clean"); code != 0 {
		t.Fatalf("sessions restart --clean: exit %d, %q", code, errOut)
	}
	d.WaitFor(func() bool { s = d.MustSession("alice"); return s.State == "idle" && s.SessionID != sid }, 2*time.Second, "alice to show idle with a new session")
	if s.SessionID == sid || s.SessionID == "" {
		t.Errorf("restart --clean kept session_id %s", s.SessionID)
	}
	daemontest.Poll(func() bool { ivs = d.InvocationsFor(s.SessionID); return len(ivs) >= 1 }, 5*time.Second)
	if len(ivs) != 1 || ivs[0].SessionID() != s.SessionID {
		t.Errorf("clean restart invocations %+v, want --session-id %s", ivs, s.SessionID)
	}
	r = d.WaitMessage(d.Send("alice", "fresh"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "fresh (turn 1)") {
		t.Errorf("reply %q, want turn 1 of a new conversation", r.Reply)
	}

	// exempt
	if _, errOut, code := d.Run("sessions", "exempt", "alice"); code != 0 {
		t.Fatalf("sessions exempt: exit %d, %q", code, errOut)
	}
	if !daemontest.Poll(func() bool { s = d.MustSession("alice"); return s.Exempt && s.ExemptFlag }, 2*time.Second) {
		t.Errorf("after exempt: exempt %t, exempt_flag %t", s.Exempt, s.ExemptFlag)
	}
	if _, errOut, code := d.Run("sessions", "exempt", "alice", "--off"); code != 0 {
		t.Fatalf("sessions exempt --off: exit %d, %q", code, errOut)
	}
	if !daemontest.Poll(func() bool { s = d.MustSession("alice"); return !s.Exempt && !s.ExemptFlag }, 2*time.Second) {
		t.Errorf("after exempt --off: exempt %t, exempt_flag %t", s.Exempt, s.ExemptFlag)
	}
	// A typo is an error and creates nothing.
	for _, op := range []string{"exempt", "restart", "kill", "pause", "resume"} {
		if _, errOut, code := d.Run("sessions", op, "newcomer"); code != 1 || !strings.Contains(errOut, "unknown chat") {
			t.Errorf("sessions %s of a chat with no session: exit %d, %q; want 1, unknown chat", op, code, errOut)
		}
	}
	if _, ok := d.Session("newcomer"); ok {
		t.Errorf("an operation on an unknown chat created a session")
	}

	// logs
	out, errOut, code = d.Run("logs", "-n", "0") // the whole manager log
	if code != 0 || !strings.Contains(out, "dispatch daemon started") || len(strings.Split(out, "\n")) < 3 {
		t.Errorf("logs: exit %d, stderr %q, stdout %.300q", code, errOut, out)
	}
	out, errOut, code = d.Run("logs", "alice")
	if code != 0 || !strings.Contains(out, "chat=alice") || !strings.Contains(out, "turn") {
		t.Errorf("logs alice: exit %d, stderr %q, stdout %.300q", code, errOut, out)
	}
	if _, _, code := d.Run("logs", "bad\x01chat"); code == 0 {
		t.Errorf("logs with an invalid chat id exited 0")
	}
}
