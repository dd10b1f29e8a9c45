package scheduler

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// TestBenchLateness measures the firing lateness of 10,000 schedules: the
// real time from the loop's wake-up at a scheduled instant to each
// firing's message being committed in the store (the schedule's row read,
// the message accepted, its schedule_fired event appended and its progress
// recorded, in one durable commit). The scheduled instants come from the
// fake clock, so the loop wakes exactly on time; what is measured is what
// the loop and the store add. Two loads, on SQLite (a file in TMPDIR) and,
// with DISPATCH_TEST_PG_DSN, PostgreSQL:
//
//   - spread: 10,000 cron schedules "M * * * *" (M = i mod 60, in seven
//     zones), about 167 due at each minute, over 10 minutes;
//   - burst: 10,000 schedules "0 * * * *" all due at the same instant
//     (those in Asia/Kolkata, +5:30, half an hour later).
//
// DISPATCH_BENCH=1 go test -run TestBenchLateness -v -timeout 30m ./internal/scheduler/
// (DISPATCH_BENCH_SCHEDULES=N: another number of schedules)
func TestBenchLateness(t *testing.T) {
	if os.Getenv("DISPATCH_BENCH") == "" {
		t.Skip("a benchmark: set DISPATCH_BENCH=1")
	}
	open := map[string]func(t *testing.T, clk clock.Clock) store.Backend{
		"sqlite": func(t *testing.T, clk clock.Clock) store.Backend {
			st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	if os.Getenv(pgtest.EnvDSN) != "" {
		open["postgres"] = func(t *testing.T, clk clock.Clock) store.Backend {
			st, err := postgres.OpenStore(bg, pgtest.NewDatabase(t), clk, postgres.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
	for _, db := range []string{"sqlite", "postgres"} {
		if open[db] == nil {
			continue
		}
		for _, load := range []string{"spread", "burst"} {
			t.Run(db+"/"+load, func(t *testing.T) { benchLateness(t, open[db], load) })
		}
	}
}

func benchLateness(t *testing.T, open func(t *testing.T, clk clock.Clock) store.Backend, load string) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("DISPATCH_BENCH_SCHEDULES")); err == nil && v > 0 {
		n = v
	}
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	clk := clock.NewFake(created)
	st := open(t, clk)
	defer st.Close()
	zones := []string{"", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo", "Asia/Tokyo"}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	due := map[time.Time]int{} // firings per instant, in the first hour
	for i := range n {
		expr := "0 * * * *"
		if load == "spread" {
			expr = fmt.Sprintf("%d * * * *", i%60)
		}
		r := store.ScheduleRecord{ID: fmt.Sprintf("s_%05d", i), ChatID: fmt.Sprintf("chat-%d", i%500), Text: "scheduled text",
			CatchUp: schedule.CatchUpOne, Spec: schedule.Spec{Kind: schedule.Cron, Expr: expr, TZ: zones[i%len(zones)], Created: created}}
		sc, err := schedule.Parse(r.Spec)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := sc.Next(created)
		due[f.At]++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := st.CreateSchedule(bg, r); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var (
		mu    sync.Mutex
		wake  time.Time
		late  []time.Duration
		fired = make(chan struct{}, n)
	)
	s := New(st, Config{Clock: clk, Accepted: func(string) {
		mu.Lock()
		late = append(late, time.Since(wake))
		mu.Unlock()
		fired <- struct{}{}
	}})
	s.Start()
	defer s.Stop()
	wakes := 10
	if load == "burst" {
		wakes = len(due)
	}
	start := time.Now()
	for range wakes {
		next, err := clk.WaitNext(bg, 2*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		wake = time.Now()
		mu.Unlock()
		clk.Set(next)
		for range due[next] {
			select {
			case <-fired:
			case <-time.After(5 * time.Minute):
				t.Fatalf("wake at %s: firings missing", next)
			}
		}
	}
	took := time.Since(start)
	slices.Sort(late)
	q := func(p float64) time.Duration { return late[int(p*float64(len(late)-1))].Round(100 * time.Microsecond) }
	t.Logf("%s: %d firings in %s: lateness p50 %s, p99 %s, max %s", load, len(late), took.Round(time.Millisecond), q(0.5), q(0.99), q(1))
}
