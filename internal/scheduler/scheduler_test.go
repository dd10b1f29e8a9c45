package scheduler

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

type env struct {
	st    *sqlite.Store
	clk   *clock.Fake
	sched *Scheduler

	mu       sync.Mutex
	accepted []string
}

func newEnv(t *testing.T, start time.Time, cfg Config) *env {
	t.Helper()
	clk := clock.NewFake(start)
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, clk: clk}
	cfg.Clock = clk
	cfg.Accepted = func(chat string) {
		e.mu.Lock()
		e.accepted = append(e.accepted, chat)
		e.mu.Unlock()
	}
	e.sched = New(st, cfg)
	t.Cleanup(func() { e.sched.Stop(); _ = st.Close() })
	return e
}

func (e *env) add(t *testing.T, r store.ScheduleRecord) {
	t.Helper()
	if r.CatchUp == "" {
		r.CatchUp = schedule.CatchUpOne
	}
	if r.Text == "" {
		r.Text = "text of " + r.ID
	}
	if _, err := schedule.Parse(r.Spec); err != nil {
		t.Fatal(err)
	}
	if err := e.st.CreateSchedule(bg, r); err != nil {
		t.Fatal(err)
	}
	e.sched.Changed(r.ID)
}

// timer waits until the loop's only timer is armed for want (zero: no
// timer at all) and returns; it fails the test after a while.
func (e *env) timer(t *testing.T, want time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := e.clk.Next()
		if (want.IsZero() && !ok) || (ok && got.Equal(want) && e.clk.Pending() == 1) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("next timer = %v (armed %v, %d timers), want %v", got, ok, e.clk.Pending(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// clientIDs returns the client ids of chat's messages in queue order.
func (e *env) clientIDs(t *testing.T, chat string) []string {
	t.Helper()
	ms, err := e.st.List(bg, store.Filter{ChatID: chat})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.ClientID)
	}
	return out
}

func (e *env) missed(t *testing.T) []events.Event {
	t.Helper()
	evs, _, err := e.st.Events(bg, events.Query{Types: []events.Type{events.ScheduleMissed}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func utc(y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, time.UTC)
}

// TestFiresOnTime: the loop sleeps until a schedule's next firing, fires
// it as a message with the firing's client id, tells the supervisor, and
// sleeps until the one after.
func TestFiresOnTime(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	e := newEnv(t, created, Config{})
	e.sched.Start()
	e.timer(t, time.Time{})
	e.add(t, store.ScheduleRecord{ID: "s_h", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}})
	e.timer(t, utc(2026, 3, 2, 11, 0))
	e.clk.Set(utc(2026, 3, 2, 11, 0))
	e.timer(t, utc(2026, 3, 2, 12, 0))
	if got := e.clientIDs(t, "c"); !slices.Equal(got, []string{"sched:s_h:2026-03-02T11:00:00Z"}) {
		t.Fatalf("messages = %v", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Equal(e.accepted, []string{"c"}) {
		t.Fatalf("accepted = %v", e.accepted)
	}
}

// TestDaylightSaving: a 02:30 job on the spring-forward day fires once at
// the jump (03:00 CEST); a 01:30 job on the fall-back day fires once, at
// the first 01:30 (EDT), and next at 01:30 EST the day after.
func TestDaylightSaving(t *testing.T) {
	tests := []struct {
		name    string
		tz      string
		expr    string
		created time.Time
		fires   []time.Time // the timers, in order, each firing once
		ids     []string
	}{
		{"Berlin spring forward", "Europe/Berlin", "30 2 * * *", utc(2026, 3, 28, 12, 0),
			[]time.Time{utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)},
			[]string{"sched:s:2026-03-29T01:00:00Z", "sched:s:2026-03-30T00:30:00Z"}},
		{"New York fall back", "America/New_York", "30 1 * * *", utc(2026, 10, 31, 12, 0),
			[]time.Time{utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)},
			[]string{"sched:s:2026-11-01T05:30:00Z", "sched:s:2026-11-02T06:30:00Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.created, Config{})
			e.add(t, store.ScheduleRecord{ID: "s", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Cron, Expr: tc.expr, TZ: tc.tz, Created: tc.created}})
			e.sched.Start()
			for _, at := range tc.fires {
				e.timer(t, at) // armed again after the previous firing committed
				e.clk.Set(at)
			}
			e.timer(t, tc.fires[len(tc.fires)-1].Add(24*time.Hour))
			if got := e.clientIDs(t, "c"); !slices.Equal(got, tc.ids) {
				t.Fatalf("fired %v, want %v", got, tc.ids)
			}
		})
	}
}

// TestCatchUpAfterDowntime: started after firings passed (the daemon was
// down), the loop deals with every schedule at once by its policy, and
// what it does not fire is reported in a schedule_missed event.
func TestCatchUpAfterDowntime(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	hourly := schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}
	daily8 := schedule.Spec{Kind: schedule.Cron, Expr: "0 8 * * *", Created: utc(2026, 3, 1, 12, 0)}
	tests := []struct {
		name    string
		spec    schedule.Spec
		policy  schedule.Policy
		window  time.Duration
		back    time.Time
		fired   []string
		missed  int
		reason  string
		nextRun time.Time
	}{
		{"one", hourly, schedule.CatchUpOne, 0, utc(2026, 3, 2, 14, 20),
			[]string{"sched:s:2026-03-02T14:00:00Z"}, 3, "coalesced", utc(2026, 3, 2, 15, 0)},
		{"none", hourly, schedule.CatchUpNone, 0, utc(2026, 3, 2, 14, 20),
			nil, 4, "catch_up_none", utc(2026, 3, 2, 15, 0)},
		{"all", hourly, schedule.CatchUpAll, 0, utc(2026, 3, 2, 14, 20),
			[]string{"sched:s:2026-03-02T11:00:00Z", "sched:s:2026-03-02T12:00:00Z", "sched:s:2026-03-02T13:00:00Z", "sched:s:2026-03-02T14:00:00Z"},
			0, "", utc(2026, 3, 2, 15, 0)},
		{"one, outside the window", daily8, schedule.CatchUpOne, 0, utc(2026, 3, 2, 9, 30),
			nil, 1, "outside_window", utc(2026, 3, 3, 8, 0)},
		{"one, a wider window", daily8, schedule.CatchUpOne, 2 * time.Hour, utc(2026, 3, 2, 9, 30),
			[]string{"sched:s:2026-03-02T08:00:00Z"}, 0, "", utc(2026, 3, 3, 8, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.spec.Created, Config{Window: tc.window})
			e.add(t, store.ScheduleRecord{ID: "s", ChatID: "c", CatchUp: tc.policy, Spec: tc.spec})
			e.clk.Set(tc.back) // down until now
			e.sched.Start()
			e.timer(t, tc.nextRun)
			if got := e.clientIDs(t, "c"); !slices.Equal(got, tc.fired) {
				t.Fatalf("fired %v, want %v", got, tc.fired)
			}
			ms := e.missed(t)
			if tc.missed == 0 {
				if len(ms) != 0 {
					t.Fatalf("missed events %+v", ms)
				}
				return
			}
			if len(ms) != 1 || ms[0].Count != tc.missed || ms[0].Reason != tc.reason {
				t.Fatalf("missed events %+v, want count %d %s", ms, tc.missed, tc.reason)
			}
		})
	}
}

// TestChanges: adding, pausing, resuming and removing a schedule wakes the
// loop, which sleeps until the right time (or not at all).
func TestChanges(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	e := newEnv(t, created, Config{})
	e.sched.Start()
	e.add(t, store.ScheduleRecord{ID: "s_h", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}})
	e.timer(t, utc(2026, 3, 2, 11, 0))
	e.add(t, store.ScheduleRecord{ID: "s_i", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Every, Expr: "10m", Created: created}})
	e.timer(t, created.Add(10*time.Minute))
	pause := func(id string, p bool) {
		if _, err := e.st.PauseSchedule(bg, id, p, e.clk.Now()); err != nil {
			t.Fatal(err)
		}
		e.sched.Changed(id)
	}
	pause("s_i", true)
	e.timer(t, utc(2026, 3, 2, 11, 0))
	pause("s_h", true)
	e.timer(t, time.Time{})
	pause("s_h", false)
	e.timer(t, utc(2026, 3, 2, 11, 0))
	if err := e.st.RemoveSchedule(bg, "s_h"); err != nil {
		t.Fatal(err)
	}
	e.sched.Changed("s_h")
	e.timer(t, time.Time{})
	e.clk.Set(utc(2026, 3, 2, 12, 0))
	if got := e.clientIDs(t, "c"); len(got) != 0 {
		t.Fatalf("fired %v", got)
	}
}

// TestStoreErrorRetried: a firing the store fails is tried again with
// backoff, not skipped, and is made once when the store is back.
func TestStoreErrorRetried(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	e := newEnv(t, created, Config{})
	e.add(t, store.ScheduleRecord{ID: "s", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}})
	e.sched.Start()
	e.timer(t, utc(2026, 3, 2, 11, 0))
	e.st.InjectWriteFault(func() error { return syscall.EIO })
	e.clk.Set(utc(2026, 3, 2, 11, 0))
	e.timer(t, utc(2026, 3, 2, 11, 0).Add(time.Second))
	e.clk.Advance(time.Second)
	e.timer(t, utc(2026, 3, 2, 11, 0).Add(3*time.Second)) // doubled
	e.st.InjectWriteFault(nil)
	e.clk.Advance(2 * time.Second)
	e.timer(t, utc(2026, 3, 2, 12, 0))
	if got := e.clientIDs(t, "c"); !slices.Equal(got, []string{"sched:s:2026-03-02T11:00:00Z"}) {
		t.Fatalf("fired %v", got)
	}
}

// TestStop: a stopped scheduler (the node lost the role) fires nothing;
// started again, it catches up.
func TestStop(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	e := newEnv(t, created, Config{})
	e.add(t, store.ScheduleRecord{ID: "s", ChatID: "c", Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: created}})
	e.sched.Start()
	e.timer(t, utc(2026, 3, 2, 11, 0))
	e.sched.Stop()
	e.timer(t, time.Time{})
	e.clk.Set(utc(2026, 3, 2, 11, 0).Add(30 * time.Second))
	if got := e.clientIDs(t, "c"); len(got) != 0 {
		t.Fatalf("stopped, fired %v", got)
	}
	e.sched.Start()
	e.timer(t, utc(2026, 3, 2, 12, 0))
	if got := e.clientIDs(t, "c"); !slices.Equal(got, []string{"sched:s:2026-03-02T11:00:00Z"}) {
		t.Fatalf("fired %v", got)
	}
}

// TestResync: a schedule added through another node (no Changed here) is
// seen at the next resync.
func TestResync(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	e := newEnv(t, created, Config{Resync: 5 * time.Second})
	e.sched.Start()
	e.timer(t, created.Add(5*time.Second))
	if err := e.st.CreateSchedule(bg, store.ScheduleRecord{ID: "s", ChatID: "c", Text: "x", CatchUp: schedule.CatchUpOne,
		Spec: schedule.Spec{Kind: schedule.Cron, Expr: "* * * * *", Created: created}}); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(utc(2026, 3, 2, 10, 8))
	e.timer(t, utc(2026, 3, 2, 10, 8).Add(5*time.Second))
	if got := e.clientIDs(t, "c"); !slices.Equal(got, []string{"sched:s:2026-03-02T10:08:00Z"}) {
		t.Fatalf("fired %v", got)
	}
}
