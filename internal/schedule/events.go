package schedule

import (
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// FiredEvent is the schedule_fired event for firing f of schedule id into
// chat, accepted as message messageID.
func FiredEvent(id, chat, messageID string, f Firing) events.Event {
	return events.Event{Type: events.ScheduleFired, ScheduleID: id, ChatID: chat,
		ScheduledAt: utc(f.At), MessageID: messageID}
}

// MissedEvent is the schedule_missed event for what a plan did not fire;
// ok is false when it missed nothing.
func MissedEvent(id, chat string, m Missed) (events.Event, bool) {
	if m.Count == 0 {
		return events.Event{}, false
	}
	return events.Event{Type: events.ScheduleMissed, ScheduleID: id, ChatID: chat,
		Count: m.Count, First: utc(m.First), Last: utc(m.Last), Reason: string(m.Reason)}, true
}

func utc(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}
