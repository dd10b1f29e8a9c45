package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

// BenchmarkPermissionRequestVisible measures how long a permission request
// takes from the agent's ask (the broker called by the CLI driver) to its
// permission_request event being readable on the feed: the request's
// durable commit (synchronous=FULL) and the feed's visible mark moving.
// The goal is p99 ≤ 10 ms; the driver's own part, from the CLI's line to
// the asker, is measured in internal/agent/claude.
func BenchmarkPermissionRequestVisible(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), clock.Real{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := 0
	br := permission.NewBroker(s, clock.Real{}, time.Hour, func() string { n++; return "req-" + strconv.Itoa(n) })
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	after, _ := s.EventsVisible()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		done := make(chan struct{})
		t0 := time.Now()
		go func() {
			defer close(done)
			if _, err := br.Ask(ctx, "bench", permission.Question{Tool: "Bash", Summary: "touch x"}); err != nil {
				b.Error(err)
			}
		}()
		var id string
		for id == "" {
			_, ch := s.EventsVisible()
			evs, next, err := s.Events(ctx, events.Query{After: after, HasAfter: true})
			if err != nil {
				b.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Type == events.PermissionRequest {
					id = ev.RequestID
				}
			}
			after = next
			if id == "" {
				<-ch
			}
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		if _, err := br.Decide(ctx, id, permission.Allow, "bench"); err != nil {
			b.Fatal(err)
		}
		<-done
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
