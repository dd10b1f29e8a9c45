// Package schedtest holds the check that the schedule tests against real
// daemons (a kill -9, a node's takeover) share: every firing happened
// exactly once.
package schedtest

import (
	"context"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
)

// Store is what the check reads.
type Store interface {
	List(ctx context.Context, f store.Filter) ([]store.Message, error)
	Events(ctx context.Context, q events.Query) ([]events.Event, int64, error)
}

// FiredOnce checks that each schedule of ats (id → its one firing time)
// made exactly one message in chats, with that firing's client id, and
// one schedule_fired event; that none was missed; and that chats hold no
// other message.
func FiredOnce(t testing.TB, st Store, chats []string, ats map[string]time.Time) {
	t.Helper()
	ctx := context.Background()
	byClient := map[string]int{}
	for _, chat := range chats {
		for _, state := range []store.State{store.Pending, store.Inflight, store.Done, store.Dead} {
			ms, err := st.List(ctx, store.Filter{ChatID: chat, State: state})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				byClient[m.ClientID]++
			}
		}
	}
	evs, _, err := st.Events(ctx, events.Query{Types: []events.Type{events.ScheduleFired, events.ScheduleMissed}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	fired := map[string]int{}
	for _, e := range evs {
		if e.Type == events.ScheduleMissed {
			t.Errorf("missed: %+v", e)
			continue
		}
		fired[e.ScheduleID]++
	}
	for id, at := range ats {
		if c := byClient[schedule.ClientID(id, at)]; c != 1 {
			t.Errorf("%s at %s: %d messages", id, at.Format(time.TimeOnly), c)
		}
		if fired[id] != 1 {
			t.Errorf("%s: %d schedule_fired events", id, fired[id])
		}
	}
	if len(byClient) != len(ats) {
		t.Errorf("%d distinct messages, want %d", len(byClient), len(ats))
	}
}
