package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestStartingSessionNotRestarted: a health check that runs while a
// session's agent is being started must not judge it dead and restart it.
// With a check every 10ms, every start overlaps a check.
func TestStartingSessionNotRestarted(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.check_interval": "10ms",
		"health.idle_timeout":   "1m",
		"restart.max_restarts":  10,
	}))
	for i := range 6 {
		chat := fmt.Sprintf("s%d", i)
		id := d.Send(chat, "hello")
		var s supervisor.SessionStatus
		d.WaitFor(func() bool {
			s = d.MustSession(chat)
			return s.Restarts > 0 || d.Message(id).State == "done"
		}, 15*time.Second, chat+"'s message to be answered")
		if s.Restarts > 0 {
			t.Fatalf("BUG: %s: a health check during its agent's start judged it dead and restarted an agent that never failed; lifecycle: %v", chat, d.Events(chat, "", ""))
		}
	}
}

// TestStaleStuckVerdict: a hanging turn is judged stuck and its session
// restarted; checks that run while that restart is still stopping the agent
// must not restart the new agent too: no session is restarted as stuck
// sooner than the stuck timeout after its agent started.
func TestStaleStuckVerdict(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.check_interval":           "100ms",
		"health.stuck_timeout":            "1s",
		"health.first_turn_stuck_timeout": "1s",
		"health.idle_timeout":             "1m",
		// The hanging stub ignores its closed stdin, so every stop of it
		// takes one grace period: several check intervals.
		"agent.stop_grace": "600ms",
		// A window this short makes every restart the first in its window,
		// so immediate (delay 0), and never exhausts the limit.
		"restart.window": "10ms",
	}))
	hang := d.Send("hal", "HANG")
	m := d.WaitMessage(hang, "dead", 30*time.Second)
	if !strings.Contains(m.Error, "stuck") || m.Failures != 2 {
		t.Errorf("dead message: failures %d, error %q", m.Failures, m.Error)
	}
	var lastStart time.Time
	for _, e := range d.Events("hal", "", "") {
		switch e.Event {
		case "start":
			lastStart = e.Time
		case "restart":
			if strings.HasPrefix(e.Reason, "stuck") && e.Time.Sub(lastStart) < time.Second {
				t.Errorf("BUG: restarted as stuck %s after its agent started (stuck timeout 1s): a stale verdict of a check made during the previous restart; %v",
					e.Time.Sub(lastStart).Round(time.Millisecond), e)
			}
		}
	}
	if t.Failed() {
		t.Logf("lifecycle: %v", d.Events("hal", "", ""))
	}
}

// TestResumedSessionsHealthy: sessions that were live when the daemon
// stopped are resumed by the next one; status must show them idle and
// alive, and the health checks that follow must find them healthy (not
// restart them).
func TestResumedSessionsHealthy(t *testing.T) {
	d := daemontest.Start(t, opts(map[string]any{
		"health.first_check_delay": "2s",
		"health.check_interval":    "100ms",
		"health.idle_timeout":      "1m",
		"restart.max_restarts":     10,
	}))
	chats := []string{"r1", "r2"}
	for _, c := range chats {
		d.WaitMessage(d.Send(c, "hi"), "done", 15*time.Second)
	}
	sids := map[string]string{}
	for _, c := range chats {
		sids[c] = d.MustSession(c).SessionID
	}
	if code, _ := d.Term(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	before := len(d.Lifecycle())
	d.Restart()
	// Both are resumed at once...
	for _, c := range chats {
		d.WaitFor(func() bool {
			ivs := d.InvocationsFor(sids[c])
			return len(ivs) == 2 && ivs[1].Resume() == sids[c]
		}, 5*time.Second, c+" to be resumed")
	}
	// ...and status, before the first check, shows them idle and alive.
	bad := map[string]supervisor.SessionStatus{}
	daemontest.Poll(func() bool {
		clear(bad)
		for _, c := range chats {
			if s, ok := d.Session(c); !ok || s.State != "idle" || !s.Alive || s.Pid == 0 {
				bad[c] = s
			}
		}
		return len(bad) == 0
	}, time.Second)
	for c, s := range bad {
		t.Errorf("BUG: %s was resumed at startup (its agent runs) but status shows state %q, alive %t, pid %d, health %q",
			c, s.State, s.Alive, s.Pid, s.HealthReason)
	}
	checks := func() int { return strings.Count(d.ManagerLog(), `msg="health check"`) }
	c0 := checks()
	d.WaitFor(func() bool { return checks() >= c0+5 }, 10*time.Second, "five health checks after the restart")
	var restarts []daemontest.LifecycleEvent
	for _, e := range d.Lifecycle()[before:] {
		if e.Event == "restart" {
			restarts = append(restarts, e)
		}
	}
	if len(restarts) != 0 {
		t.Errorf("BUG: health checks restarted sessions that were just resumed: %v", restarts)
	}
	for _, c := range chats {
		s := d.MustSession(c)
		if s.State != "idle" || !s.Alive || s.Restarts != 0 {
			t.Errorf("%s after resume: state %s, alive %t, restarts %d, health %s", c, s.State, s.Alive, s.Restarts, s.HealthReason)
		}
		r := d.WaitMessage(d.Send(c, "again"), "done", 15*time.Second)
		if !strings.Contains(r.Reply, "again (turn 2)") {
			t.Errorf("%s: reply %q, want turn 2 of the resumed conversation", c, r.Reply)
		}
	}
}
