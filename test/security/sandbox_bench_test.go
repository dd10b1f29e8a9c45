package security

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestBenchSandboxColdStart measures what the sandbox adds to a cold
// start (accept → agent started with --resume → reply), with the stub CLI
// so that the CLI's own start-up (seconds, and noisy) does not drown the
// figure: two daemons, sandbox on and off, cold starts interleaved so that
// both see the same machine load. Run it with
//
//	DISPATCH_BENCH=1 go test -run TestBenchSandboxColdStart -v ./test/security/
//
// DISPATCH_BENCH_ROUNDS sets the cold starts per daemon (default 40).
func TestBenchSandboxColdStart(t *testing.T) {
	if os.Getenv("DISPATCH_BENCH") != "1" {
		t.Skip("benchmark: set DISPATCH_BENCH=1 to run it")
	}
	requireBwrap(t)
	rounds := 40
	if n, err := strconv.Atoi(os.Getenv("DISPATCH_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	home := t.TempDir()
	on := sandboxed(t, home, nil)
	off := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{
		"agent.sandbox.mode": "off", "agent.env.STUB_PROJECTS": "1", "agent.env.HOME": t.TempDir(),
	})))
	times := map[*daemontest.Daemon][]time.Duration{}
	for i := range rounds + 1 {
		for _, d := range []*daemontest.Daemon{on, off} {
			if i > 0 { // the first turn starts a new conversation: not measured
				if _, _, code := d.Run("sessions", "kill", "alice"); code != 0 {
					t.Fatal("sessions kill alice")
				}
				if left := d.WaitNoProcs(10 * time.Second); len(left) != 0 {
					t.Fatalf("agent still alive: %v", left)
				}
			}
			took := timedTurn(t, d, "alice", fmt.Sprintf("round %d", i))
			if i > 0 {
				times[d] = append(times[d], took)
			}
		}
	}
	p := func(ds []time.Duration, q float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, max(0, int(q*float64(len(s))+0.5)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	t.Logf("cold start with --resume, stub CLI, %d runs each (accept → reply):", rounds)
	t.Logf("  sandbox off: p50 %6.1f ms  p95 %6.1f ms", ms(p(times[off], .5)), ms(p(times[off], .95)))
	t.Logf("  sandbox on:  p50 %6.1f ms  p95 %6.1f ms", ms(p(times[on], .5)), ms(p(times[on], .95)))
	t.Logf("  the sandbox adds at p50: %+.1f ms", ms(p(times[on], .5)-p(times[off], .5)))
}

// timedTurn sends text to chat and polls every millisecond until it is
// done: the time from the accept request to the stored reply.
func timedTurn(t *testing.T, d *daemontest.Daemon, chat, text string) time.Duration {
	t.Helper()
	start := time.Now()
	id := d.Send(chat, text)
	for deadline := start.Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		m := d.Message(id)
		if m.State == "done" {
			return time.Since(start)
		}
		if m.State == "dead" || time.Now().After(deadline) {
			t.Fatalf("message %s: %s (%s)", id, m.State, m.Error)
		}
	}
}
