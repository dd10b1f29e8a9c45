package schedule

import (
	"strings"
	"testing"
	"time"
)

// created is a fixed creation time for the tests: Monday 2026-06-01
// 10:00:00.75 UTC (the fraction checks that interval anchors drop it).
var created = time.Date(2026, 6, 1, 10, 0, 0, 750_000_000, time.UTC)

func mustParse(t *testing.T, sp Spec) *Schedule {
	t.Helper()
	if sp.Created.IsZero() {
		sp.Created = created
	}
	s, err := Parse(sp)
	if err != nil {
		t.Fatalf("Parse(%+v): %v", sp, err)
	}
	return s
}

func rfc(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseRefusesWithReason(t *testing.T) {
	cases := []struct {
		sp     Spec
		reason string
	}{
		{Spec{Kind: Cron, Expr: ""}, "empty"},
		{Spec{Kind: Cron, Expr: "0 8 * *"}, "expected exactly 5 fields, found 4"},
		{Spec{Kind: Cron, Expr: "0 0 8 * * *"}, "expected exactly 5 fields, found 6"},
		{Spec{Kind: Cron, Expr: "61 8 * * *"}, "above maximum (59)"},
		{Spec{Kind: Cron, Expr: "0 8 * * mon-xyz"}, "failed to parse int from xyz"},
		{Spec{Kind: Cron, Expr: "0 0 31 2 *"}, "never fires"},
		{Spec{Kind: Cron, Expr: "CRON_TZ=Europe/Berlin 0 8 * * *"}, "time zone inside the expression"},
		{Spec{Kind: Cron, Expr: "TZ=UTC 0 8 * * *"}, "time zone inside the expression"},
		{Spec{Kind: Cron, Expr: "@every 5m"}, "use an interval schedule"},
		{Spec{Kind: Cron, Expr: "@fortnightly"}, "unknown descriptor"},
		{Spec{Kind: Cron, Expr: "0 8 * * *", TZ: "Mars/Olympus_Mons"}, `unknown time zone "Mars/Olympus_Mons"`},
		{Spec{Kind: Cron, Expr: "0 8 * * *", TZ: "Local"}, "depends on the machine"},
		{Spec{Kind: Every, Expr: "30"}, "not a duration"},
		{Spec{Kind: Every, Expr: "1d"}, "not a duration"},
		{Spec{Kind: Every, Expr: "59s"}, "shorter than the minimum 1m0s"},
		{Spec{Kind: Every, Expr: "-5m"}, "shorter than the minimum"},
		{Spec{Kind: Every, Expr: "8785h"}, "longer than the maximum 8784h0m0s"},
		{Spec{Kind: Every, Expr: "1m0.5s"}, "whole number of seconds"},
		{Spec{Kind: At, Expr: "tomorrow"}, "not a time"},
		{Spec{Kind: At, Expr: "2026-12-24"}, "not a time"},
		{Spec{Kind: At, Expr: "2026-12-24T17:00:00.5Z"}, "fractions of a second"},
		{Spec{Kind: At, Expr: "2026-12-24T17:00:00.5"}, "fractions of a second"},
		{Spec{Kind: "weekly", Expr: "x"}, `unknown kind "weekly"`},
		{Spec{Kind: Cron, Expr: "0 8 * * *", Created: time.Time{}}, ""}, // filled below
	}
	for i, c := range cases {
		sp := c.sp
		if i < len(cases)-1 {
			sp.Created = created
		} else {
			c.reason = "no creation time"
		}
		_, err := Parse(sp)
		if err == nil {
			t.Errorf("Parse(%+v) accepted", sp)
			continue
		}
		e, ok := IsError(err)
		if !ok {
			t.Errorf("Parse(%+v): %T is not an *Error", sp, err)
			continue
		}
		if !strings.Contains(e.Reason, c.reason) {
			t.Errorf("Parse(%+v) reason %q, want it to name %q", sp, e.Reason, c.reason)
		}
		if !strings.Contains(err.Error(), sp.Expr) {
			t.Errorf("error %q does not quote the expression", err)
		}
	}
}

func TestParseText(t *testing.T) {
	cases := []struct {
		text string
		kind Kind
		expr string
	}{
		{"every 30m", Every, "30m"},
		{"  every   1h30m ", Every, "1h30m"},
		{"at 2026-12-24T17:00", At, "2026-12-24T17:00"},
		{"0 8 * * 1-5", Cron, "0 8 * * 1-5"},
		{"@daily", Cron, "@daily"},
	}
	for _, c := range cases {
		s, err := ParseText(c.text, "Europe/Berlin", created)
		if err != nil {
			t.Fatalf("ParseText(%q): %v", c.text, err)
		}
		if sp := s.Spec(); sp.Kind != c.kind || sp.Expr != c.expr || sp.TZ != "Europe/Berlin" {
			t.Errorf("ParseText(%q) = %+v", c.text, sp)
		}
	}
}

func TestNext(t *testing.T) {
	cases := []struct {
		name  string
		sp    Spec
		after string
		want  []string // successive firings (UTC); empty: none
	}{
		{"weekdays 8:00 Berlin (summer, UTC+2)", Spec{Kind: Cron, Expr: "0 8 * * 1-5", TZ: "Europe/Berlin"},
			"2026-06-05T06:00:00Z", // Friday 08:00 Berlin exactly: strictly after
			[]string{"2026-06-08T06:00:00Z", "2026-06-09T06:00:00Z"}},
		{"weekdays 8:00 Berlin, one ns before", Spec{Kind: Cron, Expr: "0 8 * * 1-5", TZ: "Europe/Berlin"},
			"2026-06-05T05:59:59.999999999Z",
			[]string{"2026-06-05T06:00:00Z", "2026-06-08T06:00:00Z"}},
		{"winter offset", Spec{Kind: Cron, Expr: "0 8 * * *", TZ: "Europe/Berlin"},
			"2026-12-01T00:00:00Z", []string{"2026-12-01T07:00:00Z"}},
		{"no zone is UTC", Spec{Kind: Cron, Expr: "*/15 * * * *"},
			"2026-06-01T10:07:00Z", []string{"2026-06-01T10:15:00Z", "2026-06-01T10:30:00Z"}},
		{"descriptor @daily in Tokyo", Spec{Kind: Cron, Expr: "@daily", TZ: "Asia/Tokyo"},
			"2026-06-01T10:00:00Z", []string{"2026-06-01T15:00:00Z", "2026-06-02T15:00:00Z"}},
		{"@hourly in a half-hour zone", Spec{Kind: Cron, Expr: "@hourly", TZ: "Asia/Kolkata"},
			"2026-06-01T10:00:00Z", []string{"2026-06-01T10:30:00Z", "2026-06-01T11:30:00Z"}},
		{"leap day", Spec{Kind: Cron, Expr: "0 12 29 2 *"},
			"2026-06-01T10:00:00Z", []string{"2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"}},
		{"interval anchored at creation (to the second)", Spec{Kind: Every, Expr: "30m"},
			"2026-06-01T10:00:00.75Z", []string{"2026-06-01T10:30:00Z", "2026-06-01T11:00:00Z"}},
		{"interval, after before the anchor", Spec{Kind: Every, Expr: "30m"},
			"2020-01-01T00:00:00Z", []string{"2026-06-01T10:30:00Z"}},
		{"interval, exactly on a firing", Spec{Kind: Every, Expr: "45m"},
			"2026-06-01T11:30:00Z", []string{"2026-06-01T12:15:00Z"}},
		{"interval ignores the zone and DST", Spec{Kind: Every, Expr: "24h", TZ: "Europe/Berlin"},
			"2026-10-24T09:00:00Z", []string{"2026-10-24T10:00:00Z", "2026-10-25T10:00:00Z", "2026-10-26T10:00:00Z"}},
		{"at, in the zone", Spec{Kind: At, Expr: "2026-12-24T17:00", TZ: "Europe/Berlin"},
			"2026-06-01T10:00:00Z", []string{"2026-12-24T16:00:00Z"}},
		{"at, with seconds and a space", Spec{Kind: At, Expr: "2026-12-24 17:00:30", TZ: "America/New_York"},
			"2026-06-01T10:00:00Z", []string{"2026-12-24T22:00:30Z"}},
		{"at, RFC 3339 offset wins over the zone", Spec{Kind: At, Expr: "2026-12-24T17:00:00+05:00", TZ: "Europe/Berlin"},
			"2026-06-01T10:00:00Z", []string{"2026-12-24T12:00:00Z"}},
		{"at, Z without seconds", Spec{Kind: At, Expr: "2026-12-24T17:00Z"},
			"2026-06-01T10:00:00Z", []string{"2026-12-24T17:00:00Z"}},
		{"at, already passed", Spec{Kind: At, Expr: "2026-12-24T17:00Z"},
			"2026-12-24T17:00:00Z", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, c.sp)
			at := rfc(t, c.after)
			var got []string
			for range len(c.want) + 1 {
				f, ok := s.Next(at)
				if !ok {
					break
				}
				if !f.At.After(at) {
					t.Fatalf("Next(%v) = %v, not after", at, f.At)
				}
				got = append(got, f.At.Format(time.RFC3339Nano))
				at = f.At
			}
			if len(got) > len(c.want) {
				got = got[:len(c.want)]
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("firings %v, want %v", got, c.want)
			}
		})
	}
}

func TestClientID(t *testing.T) {
	at := time.Date(2026, 12, 24, 17, 0, 0, 0, time.FixedZone("x", 3600))
	want := "sched:s-42:2026-12-24T16:00:00Z"
	if got := ClientID("s-42", at); got != want {
		t.Fatalf("ClientID = %q, want %q", got, want)
	}
	// The same instant however it is expressed, and whatever store kept
	// it (a microsecond store, a reading that lost its monotonic part).
	for _, v := range []time.Time{at.UTC(), at.In(time.UTC).Round(0), at.Add(999 * time.Microsecond)} {
		if got := ClientID("s-42", v); got != want {
			t.Errorf("ClientID(%v) = %q, want %q", v, got, want)
		}
	}
	if ClientID("s-42", at.Add(time.Second)) == want {
		t.Error("a different firing has the same id")
	}
}

// The client id of every firing a schedule makes is unique and stable:
// recomputing the firings from the stored spec gives the same ids.
func TestClientIDsStable(t *testing.T) {
	for _, sp := range []Spec{
		{Kind: Cron, Expr: "*/7 * * * *", TZ: "America/New_York"},
		{Kind: Every, Expr: "1m1s"},
	} {
		a, b := mustParse(t, sp), mustParse(t, sp)
		seen := map[string]bool{}
		ta, tb := created, created
		for range 5000 {
			fa, _ := a.Next(ta)
			fb, _ := b.Next(tb)
			id := ClientID("x", fa.At)
			if id != ClientID("x", fb.At) || seen[id] {
				t.Fatalf("%+v: id %s repeated or differs", sp, id)
			}
			seen[id] = true
			ta, tb = fa.At, fb.At
		}
	}
}
