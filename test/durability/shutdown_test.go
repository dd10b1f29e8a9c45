package durability

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestSIGTERMTurnFinishes: a message whose turn takes 2 s is in flight
// when SIGTERM arrives; the daemon lets the turn finish (shutdown_timeout
// 5 s), exits 0 within the timeout, and the message is done: the next
// daemon shows it done at once and never hands it to the agent again.
func TestSIGTERMTurnFinishes(t *testing.T) {
	d := daemontest.Start(t, opts(with(quietChecks, map[string]any{"shutdown_timeout": "5s"})))
	dumpOnFailure(t, d, "term")
	slow := d.Send("term", msgText("term", 0, "SLEEP=2s"))
	d.WaitMessage(slow, "inflight", 10*time.Second)
	// The agent has the message once the session is busy with it.
	d.WaitFor(func() bool { s, ok := d.Session("term"); return ok && s.Busy }, 5*time.Second, "the session to be busy")

	code, took := d.Term()
	t.Logf("SIGTERM with a 2 s turn in flight: exit %d after %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > 5*time.Second+time.Second {
		t.Errorf("shutdown took %s; shutdown_timeout is 5s", took)
	}
	if left := d.WaitNoProcs(3 * time.Second); len(left) != 0 {
		t.Errorf("processes outlived the daemon: %v", left)
	}

	d.Restart()
	// Right after the restart: a message not finished before the exit would
	// be pending or in flight now (a redelivery takes 2 s).
	if m := d.Message(slow); m.State != "done" || !strings.Contains(m.Reply, "term #000") {
		t.Errorf("message in flight at SIGTERM, after the restart: state %s, reply %q, error %q; want done (finished within the grace)", m.State, m.Reply, m.Error)
	}
	d.WaitMessage(d.Send("term", msgText("term", 1, "")), "done", 15*time.Second)
	if got := deliveries(d)["term"]; !slices.Equal(got, []int{0, 1}) {
		t.Errorf("the agent received %v; want [0 1] (the slow message once)", got)
	}
}

// TestSIGTERMGraceExceeded: a message whose turn takes 30 s is in flight
// when SIGTERM arrives with shutdown_timeout 1 s: the daemon stops waiting
// at the timeout, stops the agent and exits 0 promptly; the message is
// pending again (not dead, no failure charged), and the next daemon
// answers it.
func TestSIGTERMGraceExceeded(t *testing.T) {
	d := daemontest.Start(t, opts(with(quietChecks, map[string]any{"shutdown_timeout": "1s"})))
	dumpOnFailure(t, d, "grace")
	slow := d.Send("grace", msgText("grace", 0, "SLEEP=30s"))
	d.WaitMessage(slow, "inflight", 10*time.Second)
	d.WaitFor(func() bool { s, ok := d.Session("grace"); return ok && s.Busy }, 5*time.Second, "the session to be busy")

	code, took := d.Term()
	t.Logf("SIGTERM with a 30 s turn in flight, shutdown_timeout 1s: exit %d after %s", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	// 1 s of grace, then the agent stop (stop_grace 200 ms per step).
	if took > 3*time.Second {
		t.Errorf("shutdown took %s; want about shutdown_timeout (1s) plus the agent stop", took)
	}
	if left := d.WaitNoProcs(3 * time.Second); len(left) != 0 {
		t.Errorf("processes outlived the daemon: %v", left)
	}

	d.Restart()
	m := d.Message(slow)
	t.Logf("after the restart: state %s, attempts %d, failures %d, error %q", m.State, m.Attempts, m.Failures, m.Error)
	if m.State == "done" || m.State == "dead" || m.Failures != 0 {
		t.Errorf("message cut off by the shutdown, after the restart: state %s, failures %d, error %q; want pending or in flight, 0 failures", m.State, m.Failures, m.Error)
	}
	start := time.Now()
	m = d.WaitMessage(slow, "done", 45*time.Second)
	t.Logf("answered %s after the restart (attempts %d, failures %d)", time.Since(start).Round(time.Millisecond), m.Attempts, m.Failures)
	if m.Failures != 0 {
		t.Errorf("failures %d, want 0: a shutdown is not the message's fault", m.Failures)
	}
	if got := firstDelivery(deliveries(d)["grace"]); !slices.Equal(got, []int{0}) {
		t.Errorf("the agent answered %v; want [0]", got)
	}
}

// TestSecondSIGTERM: a second SIGTERM during the shutdown makes the daemon
// exit at once (a non-zero status is fine), its agents die with it, and
// the message in flight is not lost: the next daemon answers it.
func TestSecondSIGTERM(t *testing.T) {
	d := daemontest.Start(t, opts(with(quietChecks, map[string]any{"shutdown_timeout": "20s"})))
	dumpOnFailure(t, d, "twice")
	slow := d.Send("twice", msgText("twice", 0, "SLEEP=3s"))
	d.WaitMessage(slow, "inflight", 10*time.Second)
	d.WaitFor(func() bool { s, ok := d.Session("twice"); return ok && s.Busy }, 5*time.Second, "the session to be busy")

	d.Signal(syscall.SIGTERM)
	// The first signal is being handled once the daemon says so (and stops
	// serving readiness).
	d.WaitFor(func() bool { return strings.Contains(d.Output(), "shutting down") }, 5*time.Second, "the daemon to start shutting down")
	if !d.Running() {
		t.Fatalf("daemon exited before the second signal; the turn should hold it for up to 3 s")
	}
	start := time.Now()
	d.Signal(syscall.SIGTERM)
	code, exited := d.Wait(2 * time.Second)
	if !exited {
		t.Fatalf("daemon still running 2 s after the second SIGTERM")
	}
	t.Logf("second SIGTERM: exit %d after %s", code, time.Since(start).Round(time.Millisecond))
	if code == 0 {
		t.Logf("exit 0 after the second signal (non-zero would be fine too)")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("exit took %s after the second SIGTERM, want at once", took)
	}
	if left := d.WaitNoProcs(3 * time.Second); len(left) != 0 {
		t.Errorf("processes outlived the daemon: %v", left)
	}

	d.Restart()
	m := d.WaitMessage(slow, "done", 20*time.Second)
	if m.Failures != 0 {
		t.Errorf("failures %d, want 0", m.Failures)
	}
}
