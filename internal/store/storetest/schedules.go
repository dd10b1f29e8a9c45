package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
)

// The schedules' part of the contract.

// sched0 is the creation time of the schedules below: 10:07:12.
var sched0 = time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)

func hourly(id, chat string, p schedule.Policy) store.ScheduleRecord {
	return store.ScheduleRecord{ID: id, ChatID: chat, Text: "ping " + id, CatchUp: p,
		Spec: schedule.Spec{Kind: schedule.Cron, Expr: "0 * * * *", Created: sched0}}
}

func scheduleEvents(t *testing.T, st store.Backend) []events.Event {
	t.Helper()
	evs, _, err := st.Events(bg, events.Query{Types: []events.Type{events.ScheduleFired, events.ScheduleMissed}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// testSchedules: a schedule is stored, read, listed per chat, paused and
// removed; ids are unique.
func testSchedules(t *testing.T, s Suite) {
	st, _ := open(t, s)
	a := hourly("s_a", "c1", schedule.CatchUpOne)
	a.Spec.TZ = "Europe/Berlin"
	b := hourly("s_b", "c2", schedule.CatchUpAll)
	b.Spec.Created = sched0.Add(time.Second)
	for _, r := range []store.ScheduleRecord{a, b} {
		if err := st.CreateSchedule(bg, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateSchedule(bg, a); !errors.Is(err, store.ErrScheduleTaken) {
		t.Fatalf("a taken id = %v", err)
	}
	got, err := st.Schedule(bg, "s_a")
	if err != nil || got.ChatID != "c1" || got.Spec != a.Spec || got.Text != a.Text || got.CatchUp != schedule.CatchUpOne ||
		got.Paused || got.Finished || !got.Through.IsZero() || !got.LastFired.IsZero() {
		t.Fatalf("Schedule = %+v, %v", got, err)
	}
	if _, err := st.Schedule(bg, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown = %v", err)
	}
	all, err := st.Schedules(bg, "")
	if err != nil || len(all) != 2 || all[0].ID != "s_a" || all[1].ID != "s_b" {
		t.Fatalf("Schedules = %+v, %v", all, err)
	}
	if one, err := st.Schedules(bg, "c2"); err != nil || len(one) != 1 || one[0].ID != "s_b" {
		t.Fatalf("Schedules(c2) = %+v, %v", one, err)
	}
	if r, err := st.PauseSchedule(bg, "s_b", true, sched0); err != nil || !r.Paused {
		t.Fatalf("pause = %+v, %v", r, err)
	}
	if r, _ := st.Schedule(bg, "s_b"); !r.Paused {
		t.Fatalf("paused not kept: %+v", r)
	}
	if _, err := st.PauseSchedule(bg, "nope", true, sched0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pause unknown = %v", err)
	}
	if err := st.RemoveSchedule(bg, "s_b"); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveSchedule(bg, "s_b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove twice = %v", err)
	}
	if f, err := st.FireSchedule(bg, "s_b", sched0.Add(time.Hour), 0); err != nil || !f.Gone {
		t.Fatalf("fire removed = %+v, %v", f, err)
	}
}

// testScheduleFire: a firing is one commit of its message (with the
// firing's client id), its event and the schedule's progress; firing
// again finds nothing due; missed firings are reported by the policy; a
// one-off finishes.
func testScheduleFire(t *testing.T, s Suite) {
	st, _ := open(t, s)
	if err := st.CreateSchedule(bg, hourly("s_h", "c", schedule.CatchUpOne)); err != nil {
		t.Fatal(err)
	}
	// Nothing due before 11:00.
	if f, err := st.FireSchedule(bg, "s_h", time.Date(2026, 3, 2, 10, 59, 59, 0, time.UTC), 0); err != nil || len(f.Messages) != 0 || !f.Plan.Through.IsZero() {
		t.Fatalf("early fire = %+v, %v", f, err)
	}
	at11 := time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)
	f, err := st.FireSchedule(bg, "s_h", at11.Add(3*time.Second), 0)
	if err != nil || len(f.Messages) != 1 || f.New != 1 || !f.Schedule.Through.Equal(at11) || !f.Schedule.LastFired.Equal(at11) {
		t.Fatalf("fire at 11:00 = %+v, %v", f, err)
	}
	m := get(t, st, f.Messages[0])
	if m.ChatID != "c" || m.Text != "ping s_h" || m.ClientID != "sched:s_h:2026-03-02T11:00:00Z" || m.State != store.Pending {
		t.Fatalf("message = %+v", m)
	}
	if r, _ := st.Schedule(bg, "s_h"); !r.Through.Equal(at11) || !r.LastFired.Equal(at11) {
		t.Fatalf("progress not stored: %+v", r)
	}
	// Again at the same time: nothing more.
	if f, err := st.FireSchedule(bg, "s_h", at11.Add(4*time.Second), 0); err != nil || len(f.Messages) != 0 {
		t.Fatalf("second fire = %+v, %v", f, err)
	}
	// Down from 11:00 to 14:20: policy one fires 14:00 and reports 12:00
	// and 13:00 coalesced.
	at14 := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	f, err = st.FireSchedule(bg, "s_h", at14.Add(20*time.Minute), 0)
	if err != nil || len(f.Messages) != 1 || !f.Schedule.Through.Equal(at14) {
		t.Fatalf("catch-up = %+v, %v", f, err)
	}
	if m := get(t, st, f.Messages[0]); m.ClientID != "sched:s_h:2026-03-02T14:00:00Z" {
		t.Fatalf("caught-up message = %+v", m)
	}
	evs := scheduleEvents(t, st)
	if len(evs) != 3 {
		t.Fatalf("events = %+v", evs)
	}
	if e := evs[0]; e.Type != events.ScheduleFired || e.ScheduleID != "s_h" || e.ChatID != "c" || !e.ScheduledAt.Equal(at11) {
		t.Fatalf("first event = %+v", e)
	}
	if e := evs[1]; e.Type != events.ScheduleMissed || e.Count != 2 || e.Reason != "coalesced" ||
		!e.First.Equal(at11.Add(time.Hour)) || !e.Last.Equal(at11.Add(2*time.Hour)) {
		t.Fatalf("missed event = %+v", e)
	}
	if e := evs[2]; e.Type != events.ScheduleFired || !e.ScheduledAt.Equal(at14) || e.MessageID != f.Messages[0] {
		t.Fatalf("last event = %+v", e)
	}

	// A one-off time: fired once, then finished.
	once := store.ScheduleRecord{ID: "s_once", ChatID: "c", Text: "once", CatchUp: schedule.CatchUpOne,
		Spec: schedule.Spec{Kind: schedule.At, Expr: "2026-03-02T12:30", Created: sched0}}
	if err := st.CreateSchedule(bg, once); err != nil {
		t.Fatal(err)
	}
	f, err = st.FireSchedule(bg, "s_once", time.Date(2026, 3, 2, 12, 30, 1, 0, time.UTC), 0)
	if err != nil || len(f.Messages) != 1 || !f.Schedule.Finished {
		t.Fatalf("one-off = %+v, %v", f, err)
	}
	if r, _ := st.Schedule(bg, "s_once"); !r.Finished {
		t.Fatalf("finished not kept: %+v", r)
	}
	if f, err := st.FireSchedule(bg, "s_once", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC), 0); err != nil || len(f.Messages) != 0 {
		t.Fatalf("finished fired = %+v, %v", f, err)
	}
}

// testScheduleDuplicate: a firing whose message is already in the queue
// (a copy accepted with the same client id) is not doubled.
func testScheduleDuplicate(t *testing.T, s Suite) {
	st, _ := open(t, s)
	if err := st.CreateSchedule(bg, hourly("s_d", "c", schedule.CatchUpOne)); err != nil {
		t.Fatal(err)
	}
	at11 := time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)
	first, _, err := st.Accept(bg, "c", "ping s_d", schedule.ClientID("s_d", at11))
	if err != nil {
		t.Fatal(err)
	}
	f, err := st.FireSchedule(bg, "s_d", at11, 0)
	if err != nil || len(f.Messages) != 1 || f.Messages[0] != first || f.New != 0 {
		t.Fatalf("fire over a copy = %+v, %v (first %s)", f, err, first)
	}
	if l, _ := st.List(bg, store.Filter{ChatID: "c"}); len(l) != 1 {
		t.Fatalf("messages = %d", len(l))
	}
}

// testSchedulePause: a paused schedule fires nothing; resuming reports
// what fell during the pause (reason paused) and does not catch it up.
func testSchedulePause(t *testing.T, s Suite) {
	st, _ := open(t, s)
	if err := st.CreateSchedule(bg, hourly("s_p", "c", schedule.CatchUpAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PauseSchedule(bg, "s_p", true, sched0); err != nil {
		t.Fatal(err)
	}
	at13 := time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC)
	if f, err := st.FireSchedule(bg, "s_p", at13, 0); err != nil || len(f.Messages) != 0 || !f.Schedule.Paused {
		t.Fatalf("paused fired = %+v, %v", f, err)
	}
	r, err := st.PauseSchedule(bg, "s_p", false, at13.Add(30*time.Minute))
	if err != nil || r.Paused || !r.Through.Equal(at13) || !r.LastFired.IsZero() {
		t.Fatalf("resume = %+v, %v", r, err)
	}
	evs := scheduleEvents(t, st)
	if len(evs) != 1 || evs[0].Type != events.ScheduleMissed || evs[0].Reason != "paused" || evs[0].Count != 3 {
		t.Fatalf("events = %+v", evs)
	}
	// Resuming again changes nothing; the next firing is 14:00.
	if _, err := st.PauseSchedule(bg, "s_p", false, at13.Add(40*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := len(scheduleEvents(t, st)); n != 1 {
		t.Fatalf("events after a second resume = %d", n)
	}
	if f, err := st.FireSchedule(bg, "s_p", at13.Add(time.Hour), 0); err != nil || len(f.Messages) != 1 {
		t.Fatalf("fire after resume = %+v, %v", f, err)
	}
}

// testScheduleRace: the same firing fired at once through several stores
// on one database (several nodes), or several times through one, gives
// one message and one schedule_fired event.
func testScheduleRace(t *testing.T, s Suite) {
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	first, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Close() }()
	sts := []store.Backend{first, first}
	if s.Shared {
		second, err := o(clk)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = second.Close() }()
		sts = append(sts, second, second)
	}
	for i := range 5 {
		id := "s_r" + string(rune('0'+i))
		if err := first.CreateSchedule(bg, hourly(id, "c", schedule.CatchUpAll)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 3, 2, 13, 0, 0, 0, time.UTC) // 11:00, 12:00, 13:00 due
	var wg sync.WaitGroup
	for _, st := range sts {
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := st.FireSchedule(bg, "s_r"+string(rune('0'+i)), now, 0); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	l, err := first.List(bg, store.Filter{ChatID: "c"})
	if err != nil || len(l) != 15 {
		t.Fatalf("messages = %d, %v", len(l), err)
	}
	if n := len(scheduleEvents(t, first)); n != 15 {
		t.Fatalf("events = %d", n)
	}
}
