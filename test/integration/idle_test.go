package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestIdleReaping: after the idle timeout only the ordinary idle session is
// reaped (state and health "stopped", its agent gone, a reap line in the
// lifecycle log); the master session, a "-bg" session, a session flagged
// with `dispatch sessions exempt` and a session with a turn in flight longer
// than the idle timeout are not. A new message resumes the reaped
// conversation (--resume with the same id, turn 2).
func TestIdleReaping(t *testing.T) {
	const idle = 1500 * time.Millisecond
	d := daemontest.Start(t, opts(map[string]any{
		"health.idle_timeout":             "1500ms",
		"health.stuck_timeout":            "30s",
		"health.first_turn_stuck_timeout": "30s",
		"restart.max_restarts":            5,
	}))
	// A chat can be flagged once it exists (its first message created it).
	d.WaitMessage(d.Send("flagged", "hi flagged"), "done", 15*time.Second)
	if out, errOut, code := d.Run("sessions", "exempt", "flagged"); code != 0 {
		t.Fatalf("sessions exempt flagged: exit %d, %q %q", code, out, errOut)
	}
	exempt := []string{"master", "x-bg", "flagged"}
	for _, chat := range []string{"plain", "master", "x-bg"} {
		d.WaitMessage(d.Send(chat, "hi "+chat), "done", 15*time.Second)
	}
	// A turn in flight for longer than the idle timeout.
	busy := d.Send("busy", "SLEEP=4s then answer")
	d.WaitMessage(busy, "inflight", 10*time.Second)

	plain := d.MustSession("plain")
	if plain.Exempt {
		t.Errorf("plain is exempt")
	}
	for _, c := range exempt {
		if s := d.MustSession(c); !s.Exempt {
			t.Errorf("%s: exempt = false, want true", c)
		}
	}
	if s := d.MustSession("flagged"); !s.ExemptFlag {
		t.Errorf("flagged: exempt_flag = false")
	}

	start := time.Now()
	d.WaitFor(func() bool {
		for _, c := range append([]string{"busy"}, exempt...) {
			if s := d.MustSession(c); s.State == "stopped" {
				t.Fatalf("%s was stopped (exempt %t, busy %t)", c, s.Exempt, s.Busy)
			}
		}
		return d.MustSession("plain").State == "stopped"
	}, 15*time.Second, "plain to be reaped")
	t.Logf("plain reaped %s after the last turns", time.Since(start).Round(time.Millisecond))
	p := d.MustSession("plain")
	if p.HealthReason != "stopped" || !p.Healthy || p.Alive || p.Pid != 0 || p.SessionID == "" {
		t.Errorf("reaped session: %+v; want healthy, reason stopped, not alive, no pid, session_id kept", p)
	}
	if p.SessionID != "" && plain.SessionID != p.SessionID {
		t.Errorf("session_id changed from %s to %s", plain.SessionID, p.SessionID)
	}
	d.WaitFor(func() bool { return !daemontest.Alive(plain.Pid) }, 2*time.Second, "plain's agent to be gone")
	if ev := d.Events("plain", "reap", ""); len(ev) != 1 {
		t.Errorf("lifecycle reap lines for plain: %v", ev)
	}

	// The exempt sessions stay up well past the idle timeout, over several
	// more checks.
	d.WaitFor(func() bool {
		for _, c := range exempt {
			s := d.MustSession(c)
			if s.State == "stopped" || !s.Alive {
				t.Fatalf("exempt session %s: state %s, alive %t", c, s.State, s.Alive)
			}
			if s.IdleSeconds < (idle + time.Second).Seconds() {
				return false
			}
		}
		return true
	}, 15*time.Second, "exempt sessions to be idle for more than the idle timeout + 1s")

	// The busy session's turn ends without it ever having been reaped.
	m := d.WaitMessage(busy, "done", 15*time.Second)
	if !strings.Contains(m.Reply, "SLEEP=4s") {
		t.Errorf("busy reply %q", m.Reply)
	}
	for _, c := range append([]string{"busy"}, exempt...) {
		if ev := d.Events(c, "reap", ""); len(ev) != 0 {
			t.Errorf("%s was reaped: %v", c, ev)
		}
		if ev := d.Events(c, "stop", ""); len(ev) != 0 {
			t.Errorf("%s was stopped: %v", c, ev)
		}
	}

	// A new message resumes the reaped conversation.
	r := d.WaitMessage(d.Send("plain", "welcome back"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "welcome back (turn 2)") {
		t.Errorf("reply after the reap %q, want turn 2 of the same conversation", r.Reply)
	}
	ivs := d.InvocationsFor(p.SessionID)
	if len(ivs) < 2 || ivs[len(ivs)-1].Resume() != p.SessionID {
		t.Errorf("stub invocations for %s: %+v; want the last one to --resume it", p.SessionID, ivs)
	}
	d.WaitFor(func() bool { return d.MustSession("plain").State == "idle" }, 2*time.Second, "plain to show idle after its turn")
	if s := d.MustSession("plain"); s.SessionID != p.SessionID {
		t.Errorf("plain after resume: session %s, want %s", s.SessionID, p.SessionID)
	}
}
