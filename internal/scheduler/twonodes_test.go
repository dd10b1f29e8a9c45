package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// TestTwoNodes: two schedulers on one PostgreSQL database (a race for the
// role, or a node that has not yet seen that it lost it) firing the same
// schedules at the same instant make each firing once: one message and
// one schedule_fired event each. A stopped scheduler (the role lost)
// fires nothing; the other goes on alone.
func TestTwoNodes(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	clk := clock.NewFake(created)
	var sts [2]*postgres.Store
	var scheds [2]*Scheduler
	for i := range sts {
		st, err := postgres.OpenStore(bg, dsn, clk, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sts[i] = st
		scheds[i] = New(st, Config{Clock: clk, Parallel: 8})
	}
	defer func() {
		for i := range sts {
			scheds[i].Stop()
			_ = sts[i].Close()
		}
	}()
	const n = 40
	for i := range n {
		r := store.ScheduleRecord{ID: fmt.Sprintf("s_%02d", i), ChatID: fmt.Sprintf("c%d", i%5), Text: "x", CatchUp: schedule.CatchUpOne,
			Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}}
		if err := sts[i%2].CreateSchedule(bg, r); err != nil {
			t.Fatal(err)
		}
	}
	armed := func(timers int, at time.Time) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, ok := clk.Next()
			if clk.Pending() == timers && (timers == 0 || (ok && got.Equal(at))) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timers: %d, next %v; want %d at %v", clk.Pending(), got, timers, at)
			}
			time.Sleep(time.Millisecond)
		}
	}
	count := func() (msgs, fired int) {
		t.Helper()
		for c := range 5 {
			ms, err := sts[0].List(bg, store.Filter{ChatID: fmt.Sprintf("c%d", c), State: store.Pending})
			if err != nil {
				t.Fatal(err)
			}
			msgs += len(ms)
		}
		evs, _, err := sts[1].Events(bg, events.Query{Types: []events.Type{events.ScheduleFired}, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return msgs, len(evs)
	}
	scheds[0].Start()
	scheds[1].Start()
	armed(2, utc(2026, 3, 2, 11, 0))
	clk.Set(utc(2026, 3, 2, 11, 0))
	armed(2, utc(2026, 3, 2, 12, 0))
	if m, f := count(); m != n || f != n {
		t.Fatalf("after a racing firing: %d messages, %d schedule_fired events; want %d", m, f, n)
	}
	scheds[0].Stop()
	armed(1, utc(2026, 3, 2, 12, 0))
	clk.Set(utc(2026, 3, 2, 12, 0))
	armed(1, utc(2026, 3, 2, 13, 0))
	if m, f := count(); m != 2*n || f != 2*n {
		t.Fatalf("after one node's firing: %d messages, %d events; want %d", m, f, 2*n)
	}
}
