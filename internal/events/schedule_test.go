package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The schedule events keep their fields through a store (Payload and
// FromPayload) and show them in JSON; other events do not grow them.
func TestScheduleEventsRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 24, 16, 0, 0, 0, time.UTC)
	ptr := func(t time.Time) *time.Time { return &t }
	for _, e := range []Event{
		{Type: ScheduleFired, At: at, ScheduleID: "s1", ChatID: "c", ScheduledAt: ptr(at), MessageID: "m1"},
		{Type: ScheduleMissed, At: at, ScheduleID: "s1", ChatID: "c", Count: 3,
			First: ptr(at.Add(-3 * time.Hour)), Last: ptr(at.Add(-time.Hour)), Reason: "coalesced"},
	} {
		if !e.Type.Valid() {
			t.Fatalf("%s is not a valid type", e.Type)
		}
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		back, err := FromPayload(7, e.Type, at, p)
		if err != nil {
			t.Fatal(err)
		}
		if want := e.WithSeq(7); !reflect.DeepEqual(back, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, want)
		}
	}
	b, _ := json.Marshal(Event{Type: ScheduleMissed, At: at, ScheduleID: "s1", Count: 2, First: ptr(at), Last: ptr(at)})
	for _, f := range []string{`"schedule_id":"s1"`, `"count":2`, `"first":"2026-12-24T16:00:00Z"`, `"last":"2026-12-24T16:00:00Z"`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("%s lacks %s", b, f)
		}
	}
	b, _ = json.Marshal(Event{Type: Reply, At: at, ChatID: "c"})
	for _, f := range []string{"scheduled_at", "first", "last", "count"} {
		if strings.Contains(string(b), f) {
			t.Errorf("a reply shows %s: %s", f, b)
		}
	}
}
