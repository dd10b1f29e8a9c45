package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// TestPrintEventDetail: each event type's line says what a person needs
// without --json (the permission ones named nothing before).
func TestPrintEventDetail(t *testing.T) {
	at := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	exp := at.Add(30 * time.Minute)
	for _, tc := range []struct {
		ev   events.Event
		want string
	}{
		{events.Event{Seq: 1, At: at, Type: events.Reply, ChatID: "bob", TurnID: "t1", MessageIDs: []string{"m1"}, Text: "hi"},
			"turn t1, messages m1: hi"},
		{events.Event{Seq: 2, At: at, Type: events.PermissionRequest, ChatID: "bob", RequestID: "r1", Tool: "Bash", Summary: "touch x", ExpiresAt: &exp},
			"request r1: Bash: touch x (expires 2026-12-07T20:30:00Z)"},
		{events.Event{Seq: 3, At: at, Type: events.PermissionDecided, ChatID: "bob", RequestID: "r1", Tool: "Bash", Decision: "deny", By: "cli:root"},
			"request r1: Bash deny by cli:root"},
		{events.Event{Seq: 4, At: at, Type: events.PermissionDecided, ChatID: "bob", RequestID: "r2", Tool: "Write", Decision: "expired", By: "dispatch", Reason: "timeout"},
			"request r2: Write expired by dispatch (timeout)"},
		{events.Event{Seq: 5, At: at, Type: events.Progress, ChatID: "bob", Tool: "Read", Summary: "README.md"},
			"Read: README.md"},
		{events.Event{Seq: 6, At: at, Type: events.ScheduleFired, ChatID: "alice", ScheduleID: "s-1", ScheduledAt: &at, MessageID: "m9"},
			"schedule s-1, the firing of 2026-12-07T20:00:00Z: message m9"},
		{events.Event{Seq: 7, At: exp, Type: events.ScheduleMissed, ChatID: "alice", ScheduleID: "s-1", Count: 3, First: &at, Last: &exp, Reason: "coalesced"},
			"schedule s-1: 3 firing(s) not made, 2026-12-07T20:00:00Z to 2026-12-07T20:30:00Z: coalesced"},
	} {
		var b strings.Builder
		if err := printEvent(&b, tc.ev, false); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(strings.TrimSpace(b.String()), tc.want) {
			t.Errorf("%s: got %q, want it to end with %q", tc.ev.Type, b.String(), tc.want)
		}
	}
}
