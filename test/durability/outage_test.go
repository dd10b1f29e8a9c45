package durability

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

const (
	outageChats   = 4
	outagePerChat = 5
	// The outage lasts at least this many health checks (200 ms apart) and
	// this many failed probes (100 ms doubling to 1 s) after the API went
	// down.
	outageChecks = 6
	outageProbes = 5

	checksSeries = `dispatch_health_checks_total`
)

// outageSetup starts a daemon whose stub answers every turn as "API
// unreachable" while the returned file exists (it exists on return). Every
// agent's stdin is recorded (newStdinRecorder).
func outageSetup(t *testing.T) (*daemontest.Daemon, *stdinRecorder, string, []string) {
	t.Helper()
	outage := filepath.Join(t.TempDir(), "outage")
	if err := os.WriteFile(outage, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, recKeys := newStdinRecorder(t)
	d := daemontest.Start(t, opts(with(with(quietChecks, recKeys), map[string]any{
		"agent.env.STUB_OUTAGE_FILE": outage,
	})))
	chats := make([]string, outageChats)
	for i := range chats {
		chats[i] = fmt.Sprintf("out-%d", i)
	}
	dumpOnFailure(t, d, chats...)
	return d, rec, outage, chats
}

// sendRoundRobin sends perChat messages to every chat, one chat after the
// other, and returns their ids and the send order per chat.
func sendRoundRobin(d *daemontest.Daemon, chats []string, perChat int) ([]string, map[string][]int) {
	var ids []string
	want := map[string][]int{}
	for i := range perChat {
		for _, c := range chats {
			ids = append(ids, d.Send(c, msgText(c, i, "")))
			want[c] = append(want[c], i)
		}
	}
	return ids, want
}

// checkHeld asserts the state of a daemon during an outage: API down, no
// message done or dead, every session with error_count 0, no restart, not
// failed.
func checkHeld(t *testing.T, s supervisor.Status, total int) {
	t.Helper()
	if s.Daemon.API != "down" {
		t.Errorf("api %q during the outage, want down", s.Daemon.API)
	}
	if s.Queue.Done != 0 || s.Queue.Dead != 0 || s.Queue.Pending+s.Queue.Inflight != total {
		t.Errorf("queue during the outage %+v: want all %d messages pending or in flight, none done or dead", s.Queue, total)
	}
	for _, ss := range s.Sessions {
		if ss.ErrorCount != 0 || ss.Restarts != 0 || ss.State == "failed" {
			t.Errorf("session %s during the outage: error_count %d, restarts %d, state %s (%s); want 0, 0, not failed",
				ss.ChatID, ss.ErrorCount, ss.Restarts, ss.State, ss.HealthReason)
		}
	}
}

// holdOutage keeps the outage going until at least outageChecks health
// checks have run since the call and, once every session is held, at least
// outageProbes more user lines have reached an agent (the probes: while
// every session is held nothing else goes to an agent), checking the held
// state at every poll.
func holdOutage(t *testing.T, d *daemontest.Daemon, rec *stdinRecorder, total int) {
	t.Helper()
	checks0 := metric(t, d, checksSeries)
	start := time.Now()
	sawAllHeld, lines0 := false, 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := d.Status()
		checkHeld(t, s, total)
		if t.Failed() {
			t.FailNow()
		}
		if !sawAllHeld && s.Daemon.APIHeld == len(s.Sessions) {
			// From now on no chat's own turn is in flight: every new
			// line on an agent's stdin is a probe.
			sawAllHeld, lines0 = true, len(rec.Lines(t))
		}
		checks, probes := metric(t, d, checksSeries)-checks0, 0
		if sawAllHeld {
			probes = len(rec.Lines(t)) - lines0
		}
		if checks >= outageChecks && probes >= outageProbes && sawAllHeld {
			t.Logf("outage held for %s: %.0f health checks, %d probes; all %d sessions seen held",
				time.Since(start).Round(time.Millisecond), checks, probes, len(s.Sessions))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s of outage: %.0f checks, %d probes, all sessions seen held: %t (api_held %d); want ≥ %d checks, ≥ %d probes",
				time.Since(start), checks, probes, sawAllHeld, s.Daemon.APIHeld, outageChecks, outageProbes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recoverAndCheck ends the outage and checks the recovery: the API comes
// back up, every message is done, each chat's first-delivery order is its
// send order, nothing was restarted or counted as an error, and the manager
// log has the API-down and API-back lines.
func recoverAndCheck(t *testing.T, d *daemontest.Daemon, rec *stdinRecorder, outage string, ids []string, want map[string][]int) {
	t.Helper()
	if err := os.Remove(outage); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.WaitFor(func() bool { return d.Status().Daemon.API == "up" }, 10*time.Second, "the API to be seen up again")
	t.Logf("api up %s after the outage ended", time.Since(start).Round(time.Millisecond))
	s := waitAllDone(t, d, ids, 20*time.Second)
	t.Logf("all %d messages done %s after the outage ended", len(ids), time.Since(start).Round(time.Millisecond))
	if s.Daemon.API != "up" {
		t.Errorf("api %q after recovery, want up", s.Daemon.API)
	}
	if s.Queue.Done != len(ids) || s.Queue.Dead != 0 {
		t.Errorf("queue after recovery %+v; want %d done, 0 dead", s.Queue, len(ids))
	}
	checkSessionsClean(t, d, s)
	// What reached the agents' stdin, failed turns included: the stub's
	// saved conversations keep only successful turns, and a message whose
	// turn failed at the API is not sent again (the CLI keeps it).
	n := checkOrderIn(t, "agents' stdin", rec.Deliveries(t), want)
	t.Logf("%d repeated deliveries on the agents' stdin; the stub's saved conversations (successful turns only): %v", n, deliveries(d))
	log := d.ManagerLog()
	for _, line := range []string{"AI API unreachable", "AI API is back"} {
		if !strings.Contains(log, line) {
			t.Errorf("manager log has no %q line", line)
		}
	}
}

// TestOutage: the stub agent fails every turn as unreachable for a while
// (STUB_OUTAGE_FILE exists), then recovers; assert zero restarts, zero
// error counts, `api` down then up, every message done in order.
//
// Four chats get five messages each during the outage. While it lasts (at
// least 6 health checks and 5 failed probes), every poll of the status
// must show the API down, all messages pending or in flight (never done,
// never dead), every session with error_count 0 and no restart, and at
// some point every session held by the breaker. Then the file goes away.
func TestOutage(t *testing.T) {
	d, rec, outage, chats := outageSetup(t)
	ids, want := sendRoundRobin(d, chats, outagePerChat)
	d.WaitFor(func() bool { return d.Status().Daemon.API == "down" }, 10*time.Second, "api down")
	holdOutage(t, d, rec, len(ids))
	for _, id := range ids {
		if m := d.Message(id); m.State != "pending" && m.State != "inflight" || m.Failures != 0 {
			t.Errorf("message %s during the outage: state %s, failures %d, error %q; want pending, 0 failures", id, m.State, m.Failures, m.Error)
		}
	}
	recoverAndCheck(t, d, rec, outage, ids, want)
	if s := d.Status(); s.Daemon.Outages != 1 {
		t.Errorf("api_outages %d, want 1", s.Daemon.Outages)
	}
}

// TestOutageKill9: as TestOutage, but the daemon is killed with SIGKILL
// during the outage and restarted while it still lasts: the messages are
// still pending (none done, none dead), the new daemon finds the API down
// by itself and holds them, and after the outage every message is done in
// order, with no restart and no error counted.
func TestOutageKill9(t *testing.T) {
	d, rec, outage, chats := outageSetup(t)
	ids, want := sendRoundRobin(d, chats, outagePerChat)
	d.WaitFor(func() bool { return d.Status().Daemon.API == "down" }, 10*time.Second, "api down")
	lines0 := len(rec.Lines(t))
	d.WaitFor(func() bool { return len(rec.Lines(t)) >= lines0+2 }, 10*time.Second, "two probes")

	d.Kill9()
	d.Restart()
	s := d.Status()
	t.Logf("after the restart: api %s, queue %+v", s.Daemon.API, s.Queue)
	if s.Queue.Done != 0 || s.Queue.Dead != 0 || s.Queue.Pending+s.Queue.Inflight != len(ids) {
		t.Errorf("queue after kill -9 and restart during the outage %+v: want all %d pending or in flight", s.Queue, len(ids))
	}
	d.WaitFor(func() bool { return d.Status().Daemon.API == "down" }, 10*time.Second, "the new daemon to see the API down")
	holdOutage(t, d, rec, len(ids))
	recoverAndCheck(t, d, rec, outage, ids, want)
}
