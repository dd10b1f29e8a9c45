package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// The daylight-saving rule: each scheduled wall-clock time fires once, at
// the first instant the zone's clock shows it or a later time.
func TestNextDaylightSaving(t *testing.T) {
	type fire struct {
		at      string
		wall    string
		skipped bool
	}
	cases := []struct {
		name  string
		sp    Spec
		after string
		want  []fire
	}{
		// 2026-03-29 Berlin: at 02:00 CET (01:00Z) the clock jumps to 03:00 CEST.
		{"spring forward Berlin: 02:30 fires at the jump", Spec{Kind: Cron, Expr: "30 2 * * *", TZ: "Europe/Berlin"},
			"2026-03-28T12:00:00Z", []fire{
				{"2026-03-29T01:00:00Z", "2026-03-29 02:30", true},
				{"2026-03-30T00:30:00Z", "2026-03-30 02:30", false},
			}},
		// 2026-03-08 New York: at 02:00 EST (07:00Z) the clock jumps to 03:00 EDT.
		{"spring forward New York: 02:30 fires at the jump", Spec{Kind: Cron, Expr: "30 2 * * *", TZ: "America/New_York"},
			"2026-03-07T12:00:00Z", []fire{
				{"2026-03-08T07:00:00Z", "2026-03-08 02:30", true},
				{"2026-03-09T06:30:00Z", "2026-03-09 02:30", false},
			}},
		{"spring forward: 03:00 itself is an ordinary time", Spec{Kind: Cron, Expr: "0 3 * * *", TZ: "Europe/Berlin"},
			"2026-03-28T12:00:00Z", []fire{
				{"2026-03-29T01:00:00Z", "2026-03-29 03:00", false},
				{"2026-03-30T01:00:00Z", "2026-03-30 03:00", false},
			}},
		{"spring forward: times in the gap fire once, together", Spec{Kind: Cron, Expr: "*/30 * * * *", TZ: "Europe/Berlin"},
			"2026-03-29T00:15:00Z", []fire{
				{"2026-03-29T00:30:00Z", "2026-03-29 01:30", false},
				{"2026-03-29T01:00:00Z", "2026-03-29 02:00", true}, // 02:00, 02:30, 03:00
				{"2026-03-29T01:30:00Z", "2026-03-29 03:30", false},
			}},
		// 2026-10-25 Berlin: at 03:00 CEST (01:00Z) the clock goes back to
		// 02:00 CET, so 02:30 is shown at 00:30Z and at 01:30Z.
		{"fall back Berlin: 02:30 fires once, the first time", Spec{Kind: Cron, Expr: "30 2 * * *", TZ: "Europe/Berlin"},
			"2026-10-24T12:00:00Z", []fire{
				{"2026-10-25T00:30:00Z", "2026-10-25 02:30", false},
				{"2026-10-26T01:30:00Z", "2026-10-26 02:30", false},
			}},
		// 2026-11-01 New York: at 02:00 EDT (06:00Z) the clock goes back to
		// 01:00 EST, so 01:30 is shown at 05:30Z and at 06:30Z.
		{"fall back New York: 01:30 fires once, the first time", Spec{Kind: Cron, Expr: "30 1 * * *", TZ: "America/New_York"},
			"2026-10-31T12:00:00Z", []fire{
				{"2026-11-01T05:30:00Z", "2026-11-01 01:30", false},
				{"2026-11-02T06:30:00Z", "2026-11-02 01:30", false},
			}},
		{"fall back: asked during the repeated hour", Spec{Kind: Cron, Expr: "30 1 * * *", TZ: "America/New_York"},
			"2026-11-01T06:10:00Z", []fire{{"2026-11-02T06:30:00Z", "2026-11-02 01:30", false}}},
		{"fall back: asked exactly at the second 01:30", Spec{Kind: Cron, Expr: "30 1 * * *", TZ: "America/New_York"},
			"2026-11-01T06:30:00Z", []fire{{"2026-11-02T06:30:00Z", "2026-11-02 01:30", false}}},
		{"fall back: the repeated hour is not repeated", Spec{Kind: Cron, Expr: "*/30 * * * *", TZ: "America/New_York"},
			"2026-11-01T04:45:00Z", []fire{
				{"2026-11-01T05:00:00Z", "2026-11-01 01:00", false},
				{"2026-11-01T05:30:00Z", "2026-11-01 01:30", false},
				{"2026-11-01T07:00:00Z", "2026-11-01 02:00", false},
			}},
		{"at, in the gap", Spec{Kind: At, Expr: "2026-03-29T02:30", TZ: "Europe/Berlin"},
			"2026-01-01T00:00:00Z", []fire{{"2026-03-29T01:00:00Z", "2026-03-29 02:30", true}}},
		{"at, in the repeated hour: the first", Spec{Kind: At, Expr: "2026-10-25T02:30", TZ: "Europe/Berlin"},
			"2026-01-01T00:00:00Z", []fire{{"2026-10-25T00:30:00Z", "2026-10-25 02:30", false}}},
		// Lord Howe moves its clock by 30 minutes.
		{"half-hour shift, spring forward", Spec{Kind: Cron, Expr: "15 2 * * *", TZ: "Australia/Lord_Howe"},
			"2026-10-03T00:00:00Z", []fire{
				{"2026-10-03T15:30:00Z", "2026-10-04 02:15", true},
				{"2026-10-04T15:15:00Z", "2026-10-05 02:15", false},
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, Spec{Kind: c.sp.Kind, Expr: c.sp.Expr, TZ: c.sp.TZ, Created: rfc(t, "2025-12-01T00:00:00Z")})
			at := rfc(t, c.after)
			for i, w := range c.want {
				f, ok := s.Next(at)
				if !ok {
					t.Fatalf("firing %d: none", i)
				}
				got := fire{f.At.Format(time.RFC3339), f.Wall, f.Skipped}
				if got != w {
					t.Fatalf("firing %d after %v: %+v, want %+v", i, at, got, w)
				}
				at = f.At
			}
		})
	}
}

// What robfig/cron/v3 v3.0.1 does on its own, evaluated in the zone: on the
// spring-forward day a 02:30 job does not run at all, and on the fall-back
// day a 01:30 job runs twice. This is why the package evaluates the
// expression on the wall clock and places each time itself.
func TestRobfigOwnDaylightSaving(t *testing.T) {
	p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	next := func(expr, tz, after string) []string {
		s, err := p.Parse("CRON_TZ=" + tz + " " + expr)
		if err != nil {
			t.Fatal(err)
		}
		at := rfc(t, after)
		var out []string
		for range 2 {
			at = s.Next(at)
			out = append(out, at.UTC().Format(time.RFC3339))
		}
		return out
	}
	if got := next("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z"); got[0] != "2026-03-30T00:30:00Z" {
		t.Errorf("robfig spring forward: %v (expected it to skip 2026-03-29)", got)
	}
	if got := next("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z"); got[0] != "2026-11-01T05:30:00Z" || got[1] != "2026-11-01T06:30:00Z" {
		t.Errorf("robfig fall back: %v (expected it to fire twice on 2026-11-01)", got)
	}
}

// Next against a brute force that walks real time minute by minute and
// fires every scheduled wall time the clock reaches for the first time.
func TestNextMatchesBruteForce(t *testing.T) {
	windows := []struct{ tz, around string }{
		{"Europe/Berlin", "2026-03-29T01:00:00Z"},
		{"Europe/Berlin", "2026-10-25T01:00:00Z"},
		{"America/New_York", "2026-03-08T07:00:00Z"},
		{"America/New_York", "2026-11-01T06:00:00Z"},
		{"Australia/Lord_Howe", "2026-10-03T15:30:00Z"},
		{"Australia/Lord_Howe", "2026-04-04T15:00:00Z"},
		{"America/Sao_Paulo", "2018-11-04T03:00:00Z"}, // midnight did not exist
		{"America/Sao_Paulo", "2019-02-17T02:00:00Z"},
		{"Pacific/Chatham", "2026-09-26T14:00:00Z"},
		{"Asia/Kolkata", "2026-06-01T00:00:00Z"},
		{"America/New_York", "2045-11-05T06:00:00Z"}, // beyond the listed transitions
		{"Europe/Berlin", "2044-03-27T01:00:00Z"},
		{"America/New_York", "2040-12-31T00:00:00Z"},
	}
	exprs := []string{"30 2 * * *", "30 1 * * *", "0 0 * * *", "*/30 * * * *", "15 1,2,3 * * *", "0 * * * *", "59 23 * * *", "45 2 * * 0"}
	for _, w := range windows {
		around := rfc(t, w.around)
		from, to := around.Add(-50*time.Hour), around.Add(50*time.Hour)
		for _, e := range exprs {
			s := mustParse(t, Spec{Kind: Cron, Expr: e, TZ: w.tz, Created: from.Add(-time.Hour)})
			want := bruteForce(s, from, to)
			var got []string
			for at := from; ; {
				f, ok := s.Next(at)
				if !ok || f.At.After(to) {
					break
				}
				got = append(got, fmt.Sprintf("%s=%s", f.At.Format(time.RFC3339), f.Wall))
				at = f.At
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s %q:\n got %v\nwant %v", w.tz, e, got, want)
			}
		}
	}
}

// bruteForce lists the firings in (from, to]: at each real minute, the
// scheduled wall times the clock reaches for the first time fire then
// (several at once are one firing, named by the earliest).
func bruteForce(s *Schedule, from, to time.Time) []string {
	c := s.cron
	bit := func(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }
	matches := func(w time.Time) bool {
		if !bit(c.Minute, w.Minute()) || !bit(c.Hour, w.Hour()) || !bit(c.Month, int(w.Month())) {
			return false
		}
		dom, dow := bit(c.Dom, w.Day()), bit(c.Dow, int(w.Weekday()))
		if c.Dom&(1<<63) != 0 || c.Dow&(1<<63) != 0 { // a star: both must match
			return dom && dow
		}
		return dom || dow
	}
	var out []string
	high := maxWallBrute(from, s.loc)
	for t := from.Add(time.Minute); !t.After(to); t = t.Add(time.Minute) {
		w := wallOf(t, s.loc)
		var first string
		for x := high.Add(time.Minute); !x.After(w); x = x.Add(time.Minute) {
			if matches(x) && first == "" {
				first = x.Format(wallLayout)
			}
		}
		if first != "" {
			out = append(out, fmt.Sprintf("%s=%s", t.UTC().Format(time.RFC3339), first))
		}
		if w.After(high) {
			high = w
		}
	}
	return out
}

// maxWallBrute: the highest wall minute shown in the 30 hours up to t.
func maxWallBrute(t time.Time, loc *time.Location) time.Time {
	high := wallOf(t, loc)
	for u := t.Add(-zoneSpan); u.Before(t); u = u.Add(time.Minute) {
		if w := wallOf(u, loc); w.After(high) {
			high = w
		}
	}
	return high
}

// Beyond a zone's listed transitions (after 2037) the rule still holds, and
// Next does not stall at the end of a leap year.
func TestNextFarFuture(t *testing.T) {
	s := mustParse(t, Spec{Kind: Cron, Expr: "30 1 * * *", TZ: "America/New_York"})
	done := make(chan []string)
	go func() {
		var got []string
		at := rfc(t, "2040-12-29T12:00:00Z")
		for range 4 {
			f, _ := s.Next(at)
			got = append(got, f.At.Format(time.RFC3339))
			at = f.At
		}
		f, _ := s.Next(rfc(t, "2040-11-04T05:00:00Z")) // fall-back day 2040
		g, _ := s.Next(f.At)
		got = append(got, f.At.Format(time.RFC3339), g.At.Format(time.RFC3339))
		done <- got
	}()
	select {
	case got := <-done:
		want := []string{"2040-12-30T06:30:00Z", "2040-12-31T06:30:00Z", "2041-01-01T06:30:00Z", "2041-01-02T06:30:00Z",
			"2040-11-04T05:30:00Z", "2040-11-05T06:30:00Z"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("got %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next stalled")
	}
}
