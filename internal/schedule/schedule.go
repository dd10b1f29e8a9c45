// Package schedule holds the rules of schedules — texts sent into a chat
// at given times — as pure functions: parsing a schedule (a cron
// expression in a time zone, an interval, or a one-off time), the next
// firing after a given instant, the catch-up rule for firings missed while
// the daemon was down (catchup.go), and the client id that makes a firing
// idempotent. Storage and the firing loop live elsewhere; nothing here
// reads the clock.
//
// docs/schedules.md describes the syntax and behaviour for operators.
//
// Every scheduled time is a whole second (cron times are whole minutes,
// interval anchors are truncated to the second, one-off times may not
// carry fractions of a second), so a firing's client id is the same
// whatever store kept the schedule.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zones work on a machine without zoneinfo

	"github.com/robfig/cron/v3"
)

// Kind is what a schedule's times are given as.
type Kind string

// The kinds of schedule.
const (
	// Cron: a five-field cron expression (or a descriptor such as
	// @daily), read on the wall clock of the schedule's time zone.
	Cron Kind = "cron"
	// Every: a fixed interval of real time, counted from the schedule's
	// creation (its anchor).
	Every Kind = "every"
	// At: once, at a given time.
	At Kind = "at"
)

// Interval bounds.
const (
	MinInterval = time.Minute
	MaxInterval = 366 * 24 * time.Hour
)

// Spec is a schedule as an operator gives it, and as a store keeps it.
type Spec struct {
	Kind Kind
	// Expr is the cron expression ("0 8 * * 1-5", "@daily"), the interval
	// in Go syntax ("30m", "1h30m"), or the time ("2026-12-24T17:00" in
	// the zone, or RFC 3339 with an offset).
	Expr string
	// TZ is an IANA time zone name ("Europe/Berlin"); "" is UTC. It is the
	// wall clock of a cron expression and of a one-off time without an
	// offset; intervals do not use it.
	TZ string
	// Created is when the schedule was made: an interval's anchor, and the
	// instant after which a schedule's first firing falls.
	Created time.Time
}

// Schedule is a parsed Spec. Its zero value is not usable; build one with
// Parse.
type Schedule struct {
	spec   Spec
	loc    *time.Location
	cron   *cron.SpecSchedule // Location UTC: evaluated on the wall clock
	every  time.Duration
	anchor time.Time // Created, truncated to the second, UTC
	at     Firing
}

// Firing is one firing of a schedule.
type Firing struct {
	// At is the scheduled instant (UTC, a whole second). It is what the
	// client id is made from and what lateness is measured against.
	At time.Time
	// Wall is the local wall-clock time the firing stands for
	// ("2026-03-29 02:30"), for cron and one-off schedules; "" for
	// intervals.
	Wall string
	// Skipped is true when Wall did not exist in the zone (the clock
	// jumped over it for daylight saving): the firing is at the first
	// instant after the jump instead. A caller logs it.
	Skipped bool
}

// Error is a spec refused, with the reason.
type Error struct {
	Spec   Spec
	Reason string
}

func (e *Error) Error() string {
	if e.Spec.Kind == "" && e.Spec.Expr == "" {
		return e.Reason // not about the expression (a chat id, a text)
	}
	what := string(e.Spec.Kind)
	if what == "" {
		what = "schedule"
	}
	return fmt.Sprintf("%s %q: %s", what, e.Spec.Expr, e.Reason)
}

// IsError reports whether err is a refused spec, and returns it.
func IsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ParseText reads a schedule written in one string: "every 30m",
// "at 2026-12-24T17:00", or else a cron expression.
func ParseText(text, tz string, created time.Time) (*Schedule, error) {
	t := strings.TrimSpace(text)
	switch {
	case strings.HasPrefix(t, "every "):
		return Parse(Spec{Kind: Every, Expr: strings.TrimSpace(t[len("every "):]), TZ: tz, Created: created})
	case strings.HasPrefix(t, "at "):
		return Parse(Spec{Kind: At, Expr: strings.TrimSpace(t[len("at "):]), TZ: tz, Created: created})
	}
	return Parse(Spec{Kind: Cron, Expr: t, TZ: tz, Created: created})
}

// cronParser reads the five standard fields and the descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse checks sp and returns its schedule, or an *Error naming the reason.
func Parse(sp Spec) (*Schedule, error) {
	sp.Expr = strings.TrimSpace(sp.Expr)
	fail := func(format string, a ...any) (*Schedule, error) {
		return nil, &Error{Spec: sp, Reason: fmt.Sprintf(format, a...)}
	}
	if sp.Created.IsZero() {
		return fail("no creation time")
	}
	if sp.Expr == "" {
		return fail("empty")
	}
	loc, err := LoadZone(sp.TZ)
	if err != nil {
		return fail("%v", err)
	}
	s := &Schedule{spec: sp, loc: loc, anchor: sp.Created.UTC().Truncate(time.Second)}
	switch sp.Kind {
	case Cron:
		e := sp.Expr
		if strings.HasPrefix(e, "TZ=") || strings.HasPrefix(e, "CRON_TZ=") {
			return fail("a time zone inside the expression is not accepted; give it as the schedule's time zone")
		}
		if strings.HasPrefix(e, "@every") {
			return fail("@every is not accepted; use an interval schedule (every 30m)")
		}
		if strings.HasPrefix(e, "@") {
			switch e {
			case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			default:
				return fail("unknown descriptor (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)")
			}
		}
		p, err := cronParser.Parse(e)
		if err != nil {
			return fail("%v", err)
		}
		cs, ok := p.(*cron.SpecSchedule)
		if !ok {
			return fail("not a cron expression")
		}
		c := *cs
		c.Location = time.UTC
		s.cron = &c
		if _, ok := s.Next(sp.Created); !ok {
			return fail("never fires (no matching date)")
		}
	case Every:
		d, err := time.ParseDuration(sp.Expr)
		if err != nil {
			return fail("not a duration (Go syntax: 30m, 1h30m, 24h)")
		}
		if d < MinInterval {
			return fail("shorter than the minimum %v", MinInterval)
		}
		if d > MaxInterval {
			return fail("longer than the maximum %v", MaxInterval)
		}
		if d%time.Second != 0 {
			return fail("not a whole number of seconds")
		}
		s.every = d
	case At:
		t, wall, err := parseAt(sp.Expr, loc)
		if err != nil {
			return fail("%v", err)
		}
		s.at = t
		s.at.Wall = wall
	default:
		return fail("unknown kind %q (kinds: cron, every, at)", sp.Kind)
	}
	return s, nil
}

// LoadZone loads an IANA time zone; "" is UTC. "Local" is refused: it is
// whatever the daemon's machine says, which differs between nodes.
func LoadZone(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("time zone \"Local\" is not accepted (it depends on the machine); name the zone, e.g. Europe/Berlin")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (an IANA name such as Europe/Berlin)", name)
	}
	return loc, nil
}

// Layouts of a one-off time.
var (
	atWallLayouts   = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05"}
	atOffsetLayouts = []string{time.RFC3339, "2006-01-02T15:04Z07:00"}
)

// parseAt reads a one-off time: RFC 3339 with an offset (an instant), or a
// wall-clock time in loc.
func parseAt(s string, loc *time.Location) (Firing, string, error) {
	for _, l := range atOffsetLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Nanosecond() != 0 {
				return Firing{}, "", fmt.Errorf("fractions of a second are not accepted")
			}
			return Firing{At: t.UTC()}, t.In(loc).Format(wallLayout), nil
		}
	}
	for _, l := range atWallLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			if t.Nanosecond() != 0 {
				return Firing{}, "", fmt.Errorf("fractions of a second are not accepted")
			}
			f := wallToInstant(t, loc)
			return f, f.Wall, nil
		}
	}
	return Firing{}, "", fmt.Errorf("not a time (2026-12-24T17:00 in the schedule's zone, or RFC 3339 with an offset: 2026-12-24T17:00:00+01:00)")
}

// Spec returns the spec the schedule was parsed from.
func (s *Schedule) Spec() Spec { return s.spec }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the schedule's first firing strictly after after; ok is
// false when there is none (a one-off time already passed, or a cron
// expression with no matching date within five years).
//
// Cron and one-off times are wall-clock times in the schedule's zone, and
// each fires once, at the first instant the zone's clock shows that time
// or a later one: a time the clock skips (spring forward) fires at the
// instant of the jump, with Skipped set; a time the clock shows twice
// (fall back) fires at its first occurrence only. Intervals are real time:
// Created (truncated to the second) + k·interval, k ≥ 1.
func (s *Schedule) Next(after time.Time) (Firing, bool) {
	switch s.spec.Kind {
	case Cron:
		// Cron times are whole minutes: start robfig's search at the last
		// second of the current minute, which spares it stepping through
		// the seconds one by one.
		w := s.cron.Next(maxWall(after, s.loc).Truncate(time.Minute).Add(59 * time.Second))
		if w.IsZero() {
			return Firing{}, false
		}
		return wallToInstant(w, s.loc), true
	case Every:
		if after.Before(s.anchor) {
			return Firing{At: s.anchor.Add(s.every)}, true
		}
		k := after.Sub(s.anchor)/s.every + 1
		return Firing{At: s.anchor.Add(k * s.every)}, true
	case At:
		if s.at.At.After(after) {
			return s.at, true
		}
	}
	return Firing{}, false
}

// The wall clock is handled as a time.Time in UTC whose fields are the
// local reading ("wall time"): on it there are neither gaps nor repeats,
// so the cron bit sets are evaluated there, and each wall time is then
// placed on the real timeline.

const wallLayout = "2006-01-02 15:04"

// wallOf is the local reading of the instant t in loc, as a wall time.
func wallOf(t time.Time, loc *time.Location) time.Time {
	_, off := t.In(loc).Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// zoneSpan bounds how far apart an instant and its wall time can be, with
// room to spare (real offsets are within −12h…+14h). The placing below
// assumes a zone changes its offset at most once within two zoneSpans,
// which holds for every zone in use.
//
// Only offset lookups are used, not ZoneBounds: beyond a zone's last
// listed transition Go 1.26 reports a false period end on 31 December of
// leap years (2040-12-31 00:00Z for America/New_York), which would stall a
// walk from period to period (golang/go#81583).
const zoneSpan = 36 * time.Hour

// offsetAt is loc's UTC offset at the instant t.
func offsetAt(t time.Time, loc *time.Location) time.Duration {
	_, off := t.In(loc).Zone()
	return time.Duration(off) * time.Second
}

// change returns the instant loc's offset changes between lo and hi
// (whose offsets differ): the first whole second with hi's offset.
func change(lo, hi time.Time, loc *time.Location) time.Time {
	want := offsetAt(hi, loc)
	a, b := lo.Unix(), hi.Unix() // offset(a) != want, offset(b) == want
	for b-a > 1 {
		m := a + (b-a)/2
		if offsetAt(time.Unix(m, 0), loc) == want {
			b = m
		} else {
			a = m
		}
	}
	return time.Unix(b, 0).UTC()
}

// maxWall is the latest wall time the clock of loc has shown at or before
// the instant t. It is t's own reading, except in the hour after a
// fall-back, when the clock shows again times it already showed.
func maxWall(t time.Time, loc *time.Location) time.Time {
	m := wallOf(t, loc)
	past := t.Add(-zoneSpan)
	if op, on := offsetAt(past, loc), offsetAt(t, loc); op > on {
		c := change(past, t, loc)
		if w := c.Add(op - time.Nanosecond); w.After(m) {
			m = w
		}
	}
	return m
}

// wallToInstant places the wall time w in loc: the first instant at which
// the clock shows w or a later time.
func wallToInstant(w time.Time, loc *time.Location) Firing {
	f := Firing{Wall: w.Format(wallLayout)}
	early, late := w.Add(-zoneSpan), w.Add(zoneSpan)
	oe, ol := offsetAt(early, loc), offsetAt(late, loc)
	if oe == ol {
		f.At = w.Add(-oe)
		return f
	}
	// One change near w. Before it the clock reads w at w−oe, after it at
	// w−ol; either reading may not exist.
	c := change(early, late, loc)
	be, bl := w.Add(-oe), w.Add(-ol)
	switch {
	case be.Before(c):
		f.At = be // before the change (the first of two, on a fall-back)
	case !bl.Before(c):
		f.At = bl
	default:
		// Neither: the clock jumped over w at the change.
		f.At, f.Skipped = c, true
	}
	return f
}

// ClientID is the client id of a firing of schedule id at the scheduled
// instant at: "sched:<id>:<at in UTC, RFC 3339, whole seconds>". The same
// firing gives the same id on every node and after every restart, so the
// queue refuses a second copy.
func ClientID(id string, at time.Time) string {
	return "sched:" + id + ":" + at.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05Z")
}
