package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent/echo"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/supervisor"
)

// TestRunSmall runs every phase briefly against an in-process daemon, so
// the bench itself keeps working.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon")
	}
	rep, err := Run(context.Background(), Options{
		InProcess: true, Clients: 2, Duration: 300 * time.Millisecond,
		Samples: 20, Sessions: 30, StatusRuns: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Throughput == nil || rep.Throughput.Accepted == 0 || rep.Latency == nil || rep.Sessions == nil {
		t.Fatalf("incomplete report: %+v", rep)
	}
	if rep.Sessions.StatusSess < 30 {
		t.Errorf("status listed %d sessions, want at least 30", rep.Sessions.StatusSess)
	}
	for _, f := range rep.Figures {
		if !f.Measured && f.Name != figures(&Report{})[4].Name { // RSS may be unreadable
			t.Errorf("figure %q not measured", f.Name)
		}
	}
	var out strings.Builder
	if err := Print(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"durable accept throughput", "send → done p99", "per 1,000 sessions", "GET /v1/status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestQuantile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	d := summarize(ds)
	if d.P50 != 50*time.Millisecond || d.P99 != 99*time.Millisecond || d.Max != 100*time.Millisecond || d.Min != time.Millisecond {
		t.Errorf("summarize = %+v", d)
	}
	if thousands(1234567.4) != "1,234,567" || thousands(999) != "999" || thousands(-1234) != "-1,234" {
		t.Error("thousands")
	}
}

// inProcess is a supervisor on the echo agent with the default
// configuration, without HTTP: what the API drives.
type inProcess struct {
	st   *sqlite.Store
	logs *logging.Logs
	sup  *supervisor.Supervisor
}

func newInProcess(tb testing.TB) *inProcess {
	tb.Helper()
	dir := tb.TempDir()
	cfg := config.Default()
	st, err := sqlite.Open(filepath.Join(dir, "dispatch.db"), clock.Real{})
	if err != nil {
		tb.Fatal(err)
	}
	logs, err := logging.Open(dir, cfg.Log, nil)
	if err != nil {
		tb.Fatal(err)
	}
	h := cfg.Health
	sup := supervisor.New(supervisor.Config{
		CheckInterval: h.CheckInterval, FirstCheckDelay: h.FirstCheckDelay, CheckTimeout: h.CheckTimeout,
		Rules: session.Rules{
			MaxErrors: h.MaxErrors, StuckTimeout: h.StuckTimeout, FirstTurnStuckTimeout: h.FirstTurnStuckTimeout,
			IdleTimeout: h.IdleTimeout, Master: cfg.Sessions.Master, ExemptSuffix: cfg.Sessions.ExemptSuffix,
			MaxRestarts: cfg.Restart.MaxRestarts, RestartWindow: cfg.Restart.Window,
			BackoffInitial: cfg.Restart.BackoffInitial, BackoffMax: cfg.Restart.BackoffMax,
		},
		MaxAttempts: cfg.Queue.MaxAttempts, MaxBatch: cfg.Queue.MaxBatch,
		StopTimeout: 5 * time.Second,
		ProbeMin:    cfg.Outage.ProbeInitial, ProbeMax: cfg.Outage.ProbeMax, Recovery: cfg.Outage.RecoveryConcurrency,
		Version: "bench",
	}, st, echo.New(clock.Real{}), clock.Real{}, logs)
	if err := sup.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	p := &inProcess{st: st, logs: logs, sup: sup}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sup.Shutdown(ctx)
		st.Close()
		logs.Close()
	})
	return p
}

// waitDone polls a message until it is done, as a client would, but
// without HTTP.
func (p *inProcess) waitDone(tb testing.TB, id string) {
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := p.sup.Message(ctx, id)
		if err != nil {
			tb.Fatal(err)
		}
		if m.State == store.Done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("message %s not done after 30s: %s", id, m.State)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkSubmitParallel is the durable accept path without HTTP: eight
// clients, each submitting to its own chat through the supervisor while the
// echo sessions answer. Compare with `dispatch bench` to see what HTTP
// costs.
func BenchmarkSubmitParallel(b *testing.B) {
	const clients = 8
	p := newInProcess(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		chat := fmt.Sprintf("chat-%d", n.Add(1))
		for pb.Next() {
			if _, _, err := p.sup.Submit(ctx, chat, "hello", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendToDone is one chat's send → done latency without HTTP: each
// message is submitted once the previous one is done.
func BenchmarkSendToDone(b *testing.B) {
	p := newInProcess(b)
	ctx := context.Background()
	for range 10 { // start the session
		id, _, err := p.sup.Submit(ctx, "c", "warm-up", "")
		if err != nil {
			b.Fatal(err)
		}
		p.waitDone(b, id)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, _, err := p.sup.Submit(ctx, "c", "ping", "")
		if err != nil {
			b.Fatal(err)
		}
		p.waitDone(b, id)
	}
}
