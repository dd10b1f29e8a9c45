package schedule

import (
	"container/heap"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

// mixed builds n schedules of every kind over several zones, created at
// start.
func mixed(tb testing.TB, n int, start time.Time) []*Schedule {
	tb.Helper()
	zones := []string{"", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo"}
	crons := []string{"0 8 * * 1-5", "*/15 * * * *", "30 2 * * *", "30 1 * * *", "@daily", "@hourly", "0 9,13,17 * * *", "5 4 1 * *", "0 0 * * 0"}
	everies := []string{"1m", "5m", "30m", "1h", "24h", "90m"}
	out := make([]*Schedule, 0, n)
	for i := range n {
		var sp Spec
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			sp = Spec{Kind: Cron, Expr: crons[i%len(crons)], TZ: zones[i%len(zones)]}
		case 6, 7, 8:
			sp = Spec{Kind: Every, Expr: everies[i%len(everies)]}
		default:
			sp = Spec{Kind: At, Expr: start.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), TZ: zones[i%len(zones)]}
		}
		sp.Created = start.Add(time.Duration(i) * time.Second)
		s, err := Parse(sp)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

var benchStart = time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC) // across the Berlin spring-forward

// The next firing of each of 10,000 mixed schedules.
func BenchmarkNext10k(b *testing.B) {
	ss := mixed(b, 10_000, benchStart)
	after := benchStart.Add(13 * time.Hour)
	b.ResetTimer()
	for b.Loop() {
		for _, s := range ss {
			s.Next(after)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ss)), "ns/schedule")
}

func BenchmarkNextByKind(b *testing.B) {
	for _, sp := range []Spec{
		{Kind: Cron, Expr: "*/15 * * * *"},
		{Kind: Cron, Expr: "*/15 * * * *", TZ: "Europe/Berlin"},
		{Kind: Cron, Expr: "0 8 * * 1-5", TZ: "America/New_York"},
		{Kind: Every, Expr: "30m"},
		{Kind: At, Expr: "2027-01-01T00:00", TZ: "Europe/Berlin"},
	} {
		sp.Created = benchStart
		s, err := Parse(sp)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s %s %s", sp.Kind, sp.Expr, sp.TZ), func(b *testing.B) {
			at := benchStart
			for b.Loop() {
				f, _ := s.Next(at)
				at = f.At
				if at.IsZero() || at.After(benchStart.AddDate(1, 0, 0)) {
					at = benchStart // stay within the zones' listed transitions
				}
			}
		})
	}
}

// The worst catch-up: a per-minute cron after a week down (10,080 due
// firings counted one by one).
func BenchmarkDueWeekDownPerMinute(b *testing.B) {
	s, err := Parse(Spec{Kind: Cron, Expr: "* * * * *", TZ: "Europe/Berlin", Created: benchStart})
	if err != nil {
		b.Fatal(err)
	}
	now := benchStart.Add(7 * 24 * time.Hour)
	for b.Loop() {
		Due(s, benchStart, now, CatchUp{})
	}
}

// pending is a scheduler's queue of next firings, earliest first.
type pending []pendingItem

type pendingItem struct {
	at   time.Time
	idx  int
	last time.Time
}

func (p pending) Len() int           { return len(p) }
func (p pending) Less(i, j int) bool { return p[i].at.Before(p[j].at) }
func (p pending) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }
func (p *pending) Push(x any)        { *p = append(*p, x.(pendingItem)) }
func (p *pending) Pop() any {
	old := *p
	x := old[len(old)-1]
	*p = old[:len(old)-1]
	return x
}

// A scheduler loop over the fake clock: 10,000 schedules for six simulated
// hours; at each deadline it plans the due schedules (Due) and queues their
// next firing. The simulated lateness is zero by construction (the fake
// clock stops at each deadline); what is measured is the computation a
// firing waits for: from the loop's wake-up to the firing's plan, in real
// time, reported as p50/p99 and per firing. The lateness of real firings
// (through the store and the queue) needs the daemon and is measured there.
func BenchmarkSchedulerLoop(b *testing.B) {
	ss := mixed(b, 10_000, benchStart)
	var lat []time.Duration
	firings := 0
	for b.Loop() {
		clk := clock.NewFake(benchStart)
		q := make(pending, 0, len(ss))
		for i, s := range ss {
			if f, ok := s.Next(s.spec.Created); ok {
				q = append(q, pendingItem{f.At, i, s.spec.Created})
			}
		}
		heap.Init(&q)
		end := benchStart.Add(6 * time.Hour)
		lat = lat[:0]
		firings = 0
		for q.Len() > 0 && !q[0].at.After(end) {
			clk.Set(q[0].at)
			now := clk.Now()
			woke := time.Now()
			for q.Len() > 0 && !q[0].at.After(now) {
				it := heap.Pop(&q).(pendingItem)
				p := Due(ss[it.idx], it.last, now, CatchUp{})
				for range p.Fire {
					firings++
					lat = append(lat, time.Since(woke))
				}
				if p.HasNext {
					heap.Push(&q, pendingItem{p.Next.At, it.idx, p.Through})
				}
			}
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-compute-lateness-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-compute-lateness-ns")
	}
	b.ReportMetric(float64(firings), "firings/run")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(firings, 1)), "ns/firing")
}
