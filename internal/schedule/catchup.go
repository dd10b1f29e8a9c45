package schedule

import (
	"fmt"
	"time"
)

// Policy says what happens to firings whose time passed while nobody could
// fire them (the daemon was down, or no node held the scheduler role).
type Policy string

// The catch-up policies.
const (
	// CatchUpOne (the default): one firing now for the whole gap — the
	// latest missed one — if it is at most Window old; the others are
	// reported missed.
	CatchUpOne Policy = "one"
	// CatchUpNone: only a firing that is on time (at most Grace late)
	// fires; the others are reported missed.
	CatchUpNone Policy = "none"
	// CatchUpAll: every missed firing fires now, in order, at most Max of
	// them (the latest); older ones beyond Max are reported missed.
	CatchUpAll Policy = "all"
)

// ParsePolicy reads a policy; "" is CatchUpOne.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return CatchUpOne, nil
	case CatchUpOne, CatchUpNone, CatchUpAll:
		return p, nil
	}
	return "", fmt.Errorf("unknown catch-up policy %q (policies: one, none, all)", s)
}

// Defaults of CatchUp.
const (
	DefaultWindow = time.Hour
	DefaultMax    = 100
	DefaultGrace  = time.Minute
)

// CatchUp is a schedule's catch-up policy with its bounds. Zero bounds take
// the defaults.
type CatchUp struct {
	Policy Policy
	// Window: with CatchUpOne, the oldest a missed firing may be and still
	// fire (at least Grace).
	Window time.Duration
	// Max: with CatchUpAll, the most firings made at once.
	Max int
	// Grace: a firing at most this late is on time, whatever the policy;
	// it is how late a running scheduler may be without the firing
	// counting as caught up.
	Grace time.Duration
}

func (c CatchUp) withDefaults() CatchUp {
	if c.Policy == "" {
		c.Policy = CatchUpOne
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Max <= 0 {
		c.Max = DefaultMax
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.Window < c.Grace {
		c.Window = c.Grace
	}
	return c
}

// MissReason says why firings were not made.
type MissReason string

// The reasons firings are missed.
const (
	// MissedByPolicy: the policy is none and the firings were late.
	MissedByPolicy MissReason = "catch_up_none"
	// MissedCoalesced: policy one made a single, later firing for them.
	MissedCoalesced MissReason = "coalesced"
	// MissedOutsideWindow: policy one, and even the latest missed firing
	// is older than the window.
	MissedOutsideWindow MissReason = "outside_window"
	// MissedOverCap: policy all, and more firings were due than it makes
	// at once; these are the oldest.
	MissedOverCap MissReason = "over_cap"
	// MissedPaused: the firings fell while the schedule was paused; they
	// are reported when it is resumed, and not caught up.
	MissedPaused MissReason = "paused"
)

// Missed is what a Plan did not fire: Count firings, scheduled from First
// to Last. Count 0 is nothing.
type Missed struct {
	Count       int
	First, Last time.Time
	Reason      MissReason
}

// Plan is what to do about a schedule now.
type Plan struct {
	// Fire: the firings to make now, oldest first (each an accepted
	// message with ClientID).
	Fire []Firing
	// Missed: the firings not made, for one schedule_missed event.
	Missed Missed
	// Through is the latest scheduled time that is due (fired or missed),
	// zero when none is. The caller stores it as the schedule's last
	// firing in the same commit as the firings and the missed event, so
	// nothing is fired or reported twice.
	Through time.Time
	// Next is the first firing after now; HasNext false when the schedule
	// has no more (a one-off that fired).
	Next    Firing
	HasNext bool
}

// Due decides what to fire now for schedule s, whose last firing (fired
// or missed) was scheduled at last — its creation time if it never fired.
// Every firing scheduled after last and at or before now is due; each is
// either in Fire or counted in Missed, never dropped silently. A last
// before the creation (or zero) counts as the creation. Due firings are
// counted one by one for cron (a few microseconds each: a per-minute
// expression after a week down is 10,080 of them).
func Due(s *Schedule, last, now time.Time, c CatchUp) Plan {
	c = c.withDefaults()
	if last.Before(s.spec.Created) {
		last = s.spec.Created
	}
	keep := 2
	if c.Policy == CatchUpAll {
		keep = c.Max + 1
	}
	d := due(s, last, now, keep)
	var p Plan
	p.Next, p.HasNext = s.Next(now)
	if d.count == 0 {
		return p
	}
	latest := d.tail[len(d.tail)-1]
	p.Through = latest.At
	fire := 0
	switch c.Policy {
	case CatchUpAll:
		fire = min(d.count, c.Max)
		p.Missed.Reason = MissedOverCap
	case CatchUpNone:
		if now.Sub(latest.At) <= c.Grace {
			fire = 1
		}
		p.Missed.Reason = MissedByPolicy
	default:
		if now.Sub(latest.At) <= c.Window {
			fire = 1
			p.Missed.Reason = MissedCoalesced
		} else {
			p.Missed.Reason = MissedOutsideWindow
		}
	}
	p.Fire = append([]Firing(nil), d.tail[len(d.tail)-fire:]...)
	if n := d.count - fire; n > 0 {
		p.Missed.Count = n
		p.Missed.First = d.first.At
		p.Missed.Last = d.tail[len(d.tail)-fire-1].At
	} else {
		p.Missed.Reason = ""
	}
	return p
}

// Skip is what resuming a paused schedule does with the firings that fell
// during the pause: every firing scheduled after last and at or before now
// is reported missed with MissedPaused, none is fired. Through and Next are
// as in Due.
func Skip(s *Schedule, last, now time.Time) Plan {
	if last.Before(s.spec.Created) {
		last = s.spec.Created
	}
	d := due(s, last, now, 1)
	var p Plan
	p.Next, p.HasNext = s.Next(now)
	if d.count == 0 {
		return p
	}
	p.Through = d.tail[0].At
	p.Missed = Missed{Count: d.count, First: d.first.At, Last: d.tail[0].At, Reason: MissedPaused}
	return p
}

// dueSet is the firings due: how many, the first, and the last few.
type dueSet struct {
	count int
	first Firing
	tail  []Firing // the last min(count, keep), oldest first
}

// due collects the firings scheduled in (last, now], keeping the last keep.
func due(s *Schedule, last, now time.Time, keep int) dueSet {
	var d dueSet
	f, ok := s.Next(last)
	if !ok || f.At.After(now) {
		return d
	}
	d.first = f
	if s.spec.Kind == Every {
		// Arithmetic: an interval's firings are evenly spaced.
		n := int(now.Sub(f.At)/s.every) + 1
		d.count = n
		for i := max(0, n-keep); i < n; i++ {
			d.tail = append(d.tail, Firing{At: f.At.Add(time.Duration(i) * s.every)})
		}
		return d
	}
	for ok && !f.At.After(now) {
		d.count++
		if len(d.tail) == keep {
			copy(d.tail, d.tail[1:])
			d.tail = d.tail[:keep-1]
		}
		d.tail = append(d.tail, f)
		f, ok = s.Next(f.At)
	}
	return d
}
