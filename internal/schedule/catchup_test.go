package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"": CatchUpOne, "one": CatchUpOne, "none": CatchUpNone, "all": CatchUpAll} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParsePolicy("some"); err == nil || !strings.Contains(err.Error(), "one, none, all") {
		t.Errorf("ParsePolicy(some): %v", err)
	}
}

func TestDue(t *testing.T) {
	// Hourly at :00 UTC, created 2026-06-01 10:00:00.75; firings at 11:00,
	// 12:00, ...
	hourly := Spec{Kind: Cron, Expr: "0 * * * *"}
	h := func(hour int) time.Time { return time.Date(2026, 6, 1, hour, 0, 0, 0, time.UTC) }
	ns := time.Nanosecond
	type want struct {
		fire    []time.Time
		missed  Missed
		through time.Time
		next    time.Time
	}
	cases := []struct {
		name string
		sp   Spec
		last time.Time
		now  time.Time
		c    CatchUp
		want want
	}{
		{"nothing due yet", hourly, created, h(11).Add(-ns), CatchUp{},
			want{next: h(11)}},
		{"on time", hourly, created, h(11), CatchUp{},
			want{fire: []time.Time{h(11)}, through: h(11), next: h(12)}},
		{"no last firing counts as the creation", hourly, time.Time{}, h(11), CatchUp{},
			want{fire: []time.Time{h(11)}, through: h(11), next: h(12)}},
		{"already fired", hourly, h(11), h(11).Add(30 * time.Minute), CatchUp{},
			want{next: h(12)}},

		// one: the latest missed firing, if within the window.
		{"one: gap, latest within window", hourly, created, h(14).Add(20 * time.Minute), CatchUp{},
			want{fire: []time.Time{h(14)}, missed: Missed{3, h(11), h(13), MissedCoalesced}, through: h(14), next: h(15)}},
		{"one: exactly at the window edge", hourly, created, h(14).Add(time.Hour - ns), CatchUp{Window: time.Hour - ns},
			want{fire: []time.Time{h(14)}, missed: Missed{3, h(11), h(13), MissedCoalesced}, through: h(14), next: h(15)}},
		{"one: default window edge, exactly 1h late", Spec{Kind: Cron, Expr: "0 11 * * *"}, created, h(12), CatchUp{},
			want{fire: []time.Time{h(11)}, through: h(11), next: h(11).AddDate(0, 0, 1)}},
		{"one: one nanosecond past the window", Spec{Kind: Cron, Expr: "0 11 * * *"}, created, h(12).Add(ns), CatchUp{},
			want{missed: Missed{1, h(11), h(11), MissedOutsideWindow}, through: h(11), next: h(11).AddDate(0, 0, 1)}},
		{"one: whole gap outside the window", Spec{Kind: Cron, Expr: "0 11 * * *"}, created, h(11).AddDate(0, 0, 3).Add(2 * time.Hour), CatchUp{},
			want{missed: Missed{4, h(11), h(11).AddDate(0, 0, 3), MissedOutsideWindow}, through: h(11).AddDate(0, 0, 3), next: h(11).AddDate(0, 0, 4)}},
		{"one: window shorter than grace counts as grace", Spec{Kind: Cron, Expr: "0 11 * * *"}, created, h(11).Add(time.Minute), CatchUp{Window: time.Second},
			want{fire: []time.Time{h(11)}, through: h(11), next: h(11).AddDate(0, 0, 1)}},

		// none: only an on-time firing (within grace).
		{"none: on time within grace", hourly, created, h(11).Add(time.Minute), CatchUp{Policy: CatchUpNone},
			want{fire: []time.Time{h(11)}, through: h(11), next: h(12)}},
		{"none: one nanosecond past grace", hourly, created, h(11).Add(time.Minute + ns), CatchUp{Policy: CatchUpNone},
			want{missed: Missed{1, h(11), h(11), MissedByPolicy}, through: h(11), next: h(12)}},
		{"none: gap, back on time for the latest", hourly, created, h(14), CatchUp{Policy: CatchUpNone},
			want{fire: []time.Time{h(14)}, missed: Missed{3, h(11), h(13), MissedByPolicy}, through: h(14), next: h(15)}},
		{"none: gap, late for all", hourly, created, h(14).Add(30 * time.Minute), CatchUp{Policy: CatchUpNone},
			want{missed: Missed{4, h(11), h(14), MissedByPolicy}, through: h(14), next: h(15)}},

		// all: every one, in order, up to Max.
		{"all: every missed firing", hourly, created, h(14).Add(59 * time.Minute), CatchUp{Policy: CatchUpAll},
			want{fire: []time.Time{h(11), h(12), h(13), h(14)}, through: h(14), next: h(15)}},
		{"all: over the cap, the oldest missed", hourly, created, h(15), CatchUp{Policy: CatchUpAll, Max: 2},
			want{fire: []time.Time{h(14), h(15)}, missed: Missed{3, h(11), h(13), MissedOverCap}, through: h(15), next: h(16)}},
		{"all: exactly the cap", hourly, created, h(12), CatchUp{Policy: CatchUpAll, Max: 2},
			want{fire: []time.Time{h(11), h(12)}, through: h(12), next: h(13)}},

		// intervals (arithmetic path), anchored at 10:00:00.
		{"every: gap", Spec{Kind: Every, Expr: "20m"}, created, h(11).Add(5 * time.Minute), CatchUp{},
			want{fire: []time.Time{h(11)}, missed: Missed{2, h(10).Add(20 * time.Minute), h(10).Add(40 * time.Minute), MissedCoalesced}, through: h(11), next: h(11).Add(20 * time.Minute)}},
		{"every: all over cap", Spec{Kind: Every, Expr: "20m"}, h(10).Add(20 * time.Minute), h(12), CatchUp{Policy: CatchUpAll, Max: 3},
			want{fire: []time.Time{h(11).Add(20 * time.Minute), h(11).Add(40 * time.Minute), h(12)}, missed: Missed{2, h(10).Add(40 * time.Minute), h(11), MissedOverCap}, through: h(12), next: h(12).Add(20 * time.Minute)}},
		{"every: a year down, one firing", Spec{Kind: Every, Expr: "1m"}, created, h(10).AddDate(1, 0, 0), CatchUp{},
			want{fire: []time.Time{h(10).AddDate(1, 0, 0)}, missed: Missed{525600 - 1, h(10).Add(time.Minute), h(10).AddDate(1, 0, 0).Add(-time.Minute), MissedCoalesced}, through: h(10).AddDate(1, 0, 0), next: h(10).AddDate(1, 0, 0).Add(time.Minute)}},

		// one-off.
		{"at: fires once, then no next", Spec{Kind: At, Expr: "2026-06-01T12:00Z"}, created, h(12).Add(time.Second), CatchUp{},
			want{fire: []time.Time{h(12)}, through: h(12)}},
		{"at: missed outside the window", Spec{Kind: At, Expr: "2026-06-01T12:00Z"}, created, h(14), CatchUp{},
			want{missed: Missed{1, h(12), h(12), MissedOutsideWindow}, through: h(12)}},
		{"at: fired before", Spec{Kind: At, Expr: "2026-06-01T12:00Z"}, h(12), h(14), CatchUp{},
			want{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, c.sp)
			p := Due(s, c.last, c.now, c.c)
			var got []time.Time
			for _, f := range p.Fire {
				got = append(got, f.At)
			}
			if !timesEqual(got, c.want.fire) {
				t.Errorf("fire %v, want %v", got, c.want.fire)
			}
			if !missedEqual(p.Missed, c.want.missed) {
				t.Errorf("missed %+v, want %+v", p.Missed, c.want.missed)
			}
			if !p.Through.Equal(c.want.through) {
				t.Errorf("through %v, want %v", p.Through, c.want.through)
			}
			if p.HasNext != !c.want.next.IsZero() || !p.Next.At.Equal(c.want.next) {
				t.Errorf("next %v (%v), want %v", p.Next.At, p.HasNext, c.want.next)
			}
			// Nothing due is dropped silently.
			from := c.last
			if from.Before(s.spec.Created) {
				from = s.spec.Created
			}
			due := due(s, from, c.now, 1).count
			if len(p.Fire)+p.Missed.Count != due {
				t.Errorf("%d fired + %d missed != %d due", len(p.Fire), p.Missed.Count, due)
			}
		})
	}
}

func timesEqual(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func missedEqual(a, b Missed) bool {
	return a.Count == b.Count && a.First.Equal(b.First) && a.Last.Equal(b.Last) && a.Reason == b.Reason
}

// A scheduler driven by the fake clock, down for a while: every firing
// scheduled in the whole run is either fired exactly once or reported
// missed exactly once, whatever the policy.
func TestDueAcrossDowntime(t *testing.T) {
	for _, pol := range []Policy{CatchUpOne, CatchUpNone, CatchUpAll} {
		for _, sp := range []Spec{
			{Kind: Cron, Expr: "*/10 * * * *", TZ: "Europe/Berlin"},
			{Kind: Every, Expr: "7m"},
			{Kind: Cron, Expr: "30 2 * * *", TZ: "Europe/Berlin"},
		} {
			start := time.Date(2026, 3, 28, 20, 0, 0, 0, time.UTC)
			sp.Created = start
			s := mustParse(t, sp)
			clk := clock.NewFake(start)
			end := start.Add(48 * time.Hour)
			downFrom, downTo := start.Add(5*time.Hour), start.Add(9*time.Hour+3*time.Minute)

			last := s.spec.Created
			fired := map[string]int{}
			missed := 0
			var now time.Time
			for clk.Now().Before(end) {
				// The scheduler wakes at the next firing (or comes back up).
				now = clk.Now()
				p := Due(s, last, now, CatchUp{Policy: pol, Max: 5})
				for _, f := range p.Fire {
					fired[ClientID("s", f.At)]++
				}
				missed += p.Missed.Count
				if !p.Through.IsZero() {
					last = p.Through
				}
				if !p.HasNext {
					break
				}
				next := p.Next.At
				if !next.Before(downFrom) && next.Before(downTo) {
					next = downTo
				}
				clk.Set(next)
			}
			all := due(s, s.spec.Created, now, 1).count
			total := missed
			for id, n := range fired {
				if n != 1 {
					t.Errorf("%s %+v: %s fired %d times", pol, sp, id, n)
				}
				total += n
			}
			if total != all {
				t.Errorf("%s %+v: %d fired + %d missed, %d scheduled", pol, sp, len(fired), missed, all)
			}
		}
	}
}

func TestEvents(t *testing.T) {
	at := time.Date(2026, 12, 24, 17, 0, 0, 0, time.FixedZone("CET", 3600))
	e := FiredEvent("s1", "c", "m1", Firing{At: at})
	if e.Type != events.ScheduleFired || e.ScheduleID != "s1" || e.ChatID != "c" || e.MessageID != "m1" ||
		e.ScheduledAt == nil || !e.ScheduledAt.Equal(at) || e.ScheduledAt.Location() != time.UTC {
		t.Errorf("fired event %+v", e)
	}
	if _, ok := MissedEvent("s1", "c", Missed{}); ok {
		t.Error("a missed event for nothing")
	}
	m, ok := MissedEvent("s1", "c", Missed{Count: 2, First: at, Last: at.Add(time.Hour), Reason: MissedOutsideWindow})
	if !ok || m.Type != events.ScheduleMissed || m.Count != 2 || m.First == nil || !m.First.Equal(at) ||
		m.Last == nil || !m.Last.Equal(at.Add(time.Hour)) ||
		m.Reason != "outside_window" || m.ScheduleID != "s1" || m.ChatID != "c" {
		t.Errorf("missed event %+v", m)
	}
}

// TestSkip: resuming a paused schedule reports every firing of the pause
// as missed (reason paused) and fires none, whatever the policy.
func TestSkip(t *testing.T) {
	created := time.Date(2026, 3, 2, 10, 7, 12, 0, time.UTC)
	s := mustParse(t, Spec{Kind: Cron, Expr: "0 * * * *", Created: created})
	at := func(h, m int) time.Time { return time.Date(2026, 3, 2, h, m, 0, 0, time.UTC) }
	tests := []struct {
		name       string
		last, now  time.Time
		count      int
		first, thr time.Time
	}{
		{"nothing fell", created, at(10, 59), 0, time.Time{}, time.Time{}},
		{"one, at the resume itself", created, at(11, 0), 1, at(11, 0), at(11, 0)},
		{"three", created, at(13, 30), 3, at(11, 0), at(13, 0)},
		{"after a firing", at(12, 0), at(14, 5), 2, at(13, 0), at(14, 0)},
		{"zero last is the creation", time.Time{}, at(11, 30), 1, at(11, 0), at(11, 0)},
	}
	for _, tc := range tests {
		p := Skip(s, tc.last, tc.now)
		if len(p.Fire) != 0 || p.Missed.Count != tc.count || !p.Through.Equal(tc.thr) || !p.HasNext {
			t.Errorf("%s: %+v", tc.name, p)
			continue
		}
		if tc.count > 0 && (p.Missed.Reason != MissedPaused || !p.Missed.First.Equal(tc.first) || !p.Missed.Last.Equal(tc.thr)) {
			t.Errorf("%s: missed %+v", tc.name, p.Missed)
		}
	}
	once := mustParse(t, Spec{Kind: At, Expr: "2026-03-02T12:00", Created: created})
	if p := Skip(once, created, at(13, 0)); p.HasNext || p.Missed.Count != 1 {
		t.Errorf("one-off: %+v", p)
	}
}
