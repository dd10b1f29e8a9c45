package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// `send --wait` returns as soon as the outcome is known, with an exit code
// that says which: 0 answered, 1 not accepted, 3 timed out (still queued),
// 4 given up (the message is dead, or its session failed).
func TestSendWaitExitCodes(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))

	out, errOut, code := d.Run("send", "ok", "hello", "--wait", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "hello") {
		t.Errorf("answered: exit %d, %q %q; want 0 and the reply", code, out, errOut)
	}

	if _, errOut, code := d.Run("send", " padded", "hello", "--wait"); code != 1 {
		t.Errorf("not accepted: exit %d, %q; want 1", code, errOut)
	}

	// A message that crashes the agent every time ends dead: exit 4.
	start := time.Now()
	_, errOut, code = d.Run("send", "poison", "CRASH", "--wait", "--timeout", "60s")
	if code != 4 || !strings.Contains(errOut, "dead") {
		t.Errorf("dead message: exit %d, %q; want 4 and the reason", code, errOut)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("dead message: send --wait took %s", took)
	}

	// Held on purpose: the wait times out with 3, and the message stays.
	d.WaitMessage(d.Send("held", "first"), "done", 15*time.Second)
	if _, errOut, code := d.Run("sessions", "pause", "held"); code != 0 {
		t.Fatalf("pause: exit %d, %q", code, errOut)
	}
	_, errOut, code = d.Run("send", "held", "while paused", "--wait", "--timeout", "500ms")
	if code != 3 || !strings.Contains(errOut, "stays queued") {
		t.Errorf("timed out: exit %d, %q; want 3", code, errOut)
	}
	if s := d.MustSession("held"); s.State != "paused" || s.QueueDepth != 1 || !s.Healthy || s.HealthReason != "paused" {
		t.Errorf("paused session: %+v", s)
	}
	if _, errOut, code := d.Run("sessions", "resume", "held"); code != 0 {
		t.Fatalf("resume: exit %d, %q", code, errOut)
	}
	d.WaitFor(func() bool { return d.Status().Queue.Pending == 0 && d.MustSession("held").QueueDepth == 0 },
		15*time.Second, "the held message answered after resume")

	if _, _, code := d.Run("send", "ok", "x", "--timeout", "1s"); code != 1 {
		t.Errorf("--timeout without --wait: exit %d, want 1", code)
	}
}

// With the agent binary missing the session fails within seconds; a sender
// waiting for a reply learns it at once (exit 4) instead of sitting out its
// whole timeout.
func TestSendWaitGivesUpWhenTheSessionFails(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{
		"agent.command": "/nonexistent/claude",
	})))
	start := time.Now()
	_, errOut, code := d.Run("send", "alice", "hello", "--wait", "--timeout", "5m")
	if code != 4 || !strings.Contains(errOut, "session failed") || !strings.Contains(errOut, "dispatch sessions restart alice") {
		t.Errorf("exit %d, %q; want 4, the session's failure and the remedy", code, errOut)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("send --wait took %s for a failed session", took)
	}
	s := d.MustSession("alice")
	if s.State != "failed" || s.QueueDepth != 1 {
		t.Errorf("session: %+v; want failed with the message kept", s)
	}
	// status shows the whole reason (the table clips it) and the remedy.
	out, _, _ := d.Run("status")
	if !strings.Contains(out, "alice: "+s.HealthReason+" (`dispatch sessions restart alice` starts it again)") {
		t.Errorf("status does not give the failed session's reason %q in full with its remedy:\n%s", s.HealthReason, out)
	}
}

// `sessions kill` with messages waiting hands them to a new agent at once.
func TestKillHandsWaitingMessagesToANewAgent(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	busy := d.Send("kate", "SLEEP=2s")
	d.WaitMessage(busy, "inflight", 10*time.Second)
	next := d.Send("kate", "next")
	if _, errOut, code := d.Run("sessions", "kill", "kate"); code != 0 {
		t.Fatalf("kill: exit %d, %q", code, errOut)
	}
	// The killed turn's message goes back in line first, uncharged; the
	// new agent answers it and then the one behind it.
	d.WaitMessage(next, "done", 20*time.Second)
	if m := d.Message(busy); m.State != "done" || m.Failures != 0 {
		t.Errorf("the killed turn's message: %+v; want it answered, uncharged", m)
	}
	if s := d.MustSession("kate"); s.State != "idle" || s.Restarts != 0 {
		t.Errorf("after kill: %+v; want a new agent, idle, no automatic restart", s)
	}
}
