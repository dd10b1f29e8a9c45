package campaign

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Campaign 2: an API outage that starts in the middle of a turn while
// another chat is answered continuously, twice. The slow chat's turn fails
// because of the outage; it is not charged: no lifecycle line says
// messages=charge, and the message ends done.
func TestCampaignOutageMidTurn(t *testing.T) {
	outage := filepath.Join(t.TempDir(), "outage")
	d := daemontest.Start(t, daemontest.Set(daemontest.With(quiet, map[string]any{
		"agent.env.STUB_OUTAGE_FILE": outage,
	})))
	d.WaitMessage(d.Send("slow", "warm up"), "done", 20*time.Second)
	d.WaitMessage(d.Send("busy", "warm up"), "done", 20*time.Second)

	var stop atomic.Bool
	var answered atomic.Int64
	busyDone := make(chan struct{})
	go func() { // the busy chat: one short turn after another
		defer close(busyDone)
		for i := 0; !stop.Load(); i++ {
			id := d.Send("busy", fmt.Sprintf("busy #%d SLEEP=50ms", i))
			if daemontest.Poll(func() bool { return d.Message(id).State == "done" }, 30*time.Second) {
				answered.Add(1)
			}
		}
	}()

	var slowIDs []string
	for round := range 2 {
		id := d.Send("slow", fmt.Sprintf("slow #%d SLEEP=1500ms", round))
		slowIDs = append(slowIDs, id)
		d.WaitMessage(id, "inflight", 10*time.Second)
		before := answered.Load()
		time.Sleep(800 * time.Millisecond) // the busy chat is answered meanwhile
		t.Logf("round %d: busy chat answered %d times in the slow turn before the outage", round, answered.Load()-before)
		if err := os.WriteFile(outage, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := os.Remove(outage); err != nil {
			t.Fatal(err)
		}
		d.WaitMessage(id, "done", 60*time.Second)
	}
	stop.Store(true)
	<-busyDone

	charged := countLines(d, "slow", "messages=charge")
	var attempts, failures []int
	for _, id := range slowIDs {
		m := d.Message(id)
		attempts = append(attempts, m.Attempts)
		failures = append(failures, m.Failures)
	}
	slog, _ := os.ReadFile(filepath.Join(d.StateDir, "logs", "sessions", "slow.log"))
	blamedAPI := strings.Count(string(slog), "blame=api")
	blamedOther := strings.Count(string(slog), "blame=conversation") + strings.Count(string(slog), "blame=message")
	ss := d.MustSession("slow")
	t.Logf("RESULT outage mid-turn: 2 outages, busy chat answered %d times; slow chat: failures blamed on the API %d, on the conversation or message %d, %d charge lines; attempts %v, charged failures %v, error_count %d, restarts %d",
		answered.Load(), blamedAPI, blamedOther, charged, attempts, failures, ss.ErrorCount, ss.Restarts)
	if blamedAPI == 0 {
		t.Error("no turn of the slow chat failed in the outage: the campaign tested nothing")
	}
	if charged != 0 || ss.ErrorCount != 0 || blamedOther != 0 || slices.Max(failures) != 0 {
		t.Errorf("the slow chat was charged for the outage: %d charge lines, error_count %d", charged, ss.ErrorCount)
	}
}

// Campaign 3: an agent that never reads its input (its command a script
// that does `exec sleep 100000`), first while another chat is answered,
// then alone. Its message is requeued and the agent restarted (blame
// agent), never dead-lettered, and the API is never thought down; once the
// agent reads again, the message is answered.
func TestCampaignAgentNeverReads(t *testing.T) {
	_, stub := daemontest.Binaries(t)
	dir := t.TempDir()
	flag := filepath.Join(dir, "deaf")
	script := daemontest.WriteScript(t, filepath.Join(dir, "agent.sh"), fmt.Sprintf(`#!/bin/sh
case "$PWD" in
*deaf*) [ -e %q ] && exec sleep 100000 ;;
esac
exec %q "$@"
`, flag, stub))
	d := daemontest.Start(t, daemontest.Set(map[string]any{
		"agent.command":       script,
		"health.idle_timeout": "1h",
	}))
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for phase, chat := range []string{"deaf", "deaf-alone"} {
		withBusy := phase == 0
		id := d.Send(chat, fmt.Sprintf("%s #0", chat))
		end := time.Now().Add(12 * time.Second)
		busy, dead, apiDown := 0, false, false
		for time.Now().Before(end) {
			if withBusy {
				d.WaitMessage(d.Send("busy", fmt.Sprintf("busy #%d", busy)), "done", 20*time.Second)
				busy++
			} else {
				time.Sleep(200 * time.Millisecond)
			}
			if d.Message(id).State == "dead" {
				dead = true
				break
			}
			if d.Status().Daemon.API != "up" {
				apiDown = true
			}
		}
		m := d.Message(id)
		ss := d.MustSession(chat)
		t.Logf("RESULT agent never reads (another chat answered meanwhile: %t, %d turns): after 12s message %s, attempts %d; session %s, restarts %d, error_count %d; api thought down %t; charge lines %d",
			withBusy, busy, m.State, m.Attempts, ss.State, ss.Restarts, ss.ErrorCount, apiDown, countLines(d, chat, "messages=charge"))
		if dead || apiDown || ss.Restarts == 0 || ss.ErrorCount != 0 {
			t.Errorf("%s: dead %t, api thought down %t, restarts %d, error_count %d; want requeued and restarted, uncharged", chat, dead, apiDown, ss.Restarts, ss.ErrorCount)
		}
	}
	// The agent reads again; the operator restarts the failed sessions.
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	for _, chat := range []string{"deaf", "deaf-alone"} {
		if st, body := d.Post("/v1/sessions/restart", map[string]any{"chat_id": chat}); st >= 300 {
			t.Fatalf("restart %s: HTTP %d %s", chat, st, body)
		}
	}
	waitIdle(t, d, 60*time.Second)
	if q := d.Status().Queue; q.Dead != 0 {
		t.Errorf("%d dead after the agent reads again", q.Dead)
	}
}
