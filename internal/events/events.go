// Package events defines dispatch's event feed: what front-ends (a chat
// bridge, a web app, a script) read to learn what happened to their
// messages — above all the replies — and what webhooks deliver.
//
// An event is written durably, in the same commit as the change it reports
// (a reply in the commit that marks its messages done), and gets a sequence
// number (Seq) from the store. The feed's one promise to readers: once a
// reader has been given the events up to Seq N, no event with a Seq ≤ N
// ever appears later. See the store's Feed documentation for how a store
// keeps it.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Type is an event's kind.
type Type string

// The event types.
const (
	// Reply: a turn succeeded. ChatID, TurnID, MessageIDs (in order), Text.
	Reply Type = "reply"
	// DeadLetter: a message gave up. ChatID, MessageID, Error.
	DeadLetter Type = "dead_letter"
	// SessionFailed: a session stopped restarting. ChatID, Reason.
	SessionFailed Type = "session_failed"
	// SessionRecovered: a failed session runs again. ChatID, Reason.
	SessionRecovered Type = "session_recovered"
	// SessionReset: a chat's conversation had to start over (it could not
	// be resumed, or had to restart clean), so the agent lost its earlier
	// context. ChatID, Reason.
	SessionReset Type = "session_reset"
	// APIDown and APIUp: the AI API became unreachable / reachable again.
	APIDown Type = "api_down"
	APIUp   Type = "api_up"
	// PermissionRequest: a chat's agent asks whether it may run a tool.
	// ChatID, RequestID, Tool, Summary (a short human description of the
	// call: the command, the file path and size), ExpiresAt.
	PermissionRequest Type = "permission_request"
	// PermissionDecided: a permission request was closed. ChatID,
	// RequestID, Tool, Decision (allow, allow_always, deny, expired), By
	// (who decided: a person, "rule" or "dispatch"), Reason for expired.
	PermissionDecided Type = "permission_decided"
	// Progress: a running turn started using a tool. ChatID, TurnID, Tool,
	// Summary. Kept only while the turn runs, and sent to webhooks only
	// when they subscribe to it by name (OptIn).
	Progress Type = "progress"
	// ScheduleFired: a schedule's firing was accepted as a message.
	// ScheduleID, ChatID, ScheduledAt, MessageID.
	ScheduleFired Type = "schedule_fired"
	// ScheduleMissed: firings of a schedule were not made (nobody could
	// fire them in time, and the catch-up policy said so). ScheduleID,
	// ChatID, Count, First and Last (scheduled times), Reason.
	ScheduleMissed Type = "schedule_missed"
)

// AllTypes lists every type, in a stable order.
var AllTypes = []Type{Reply, DeadLetter, SessionFailed, SessionRecovered, SessionReset, APIDown, APIUp,
	PermissionRequest, PermissionDecided, Progress, ScheduleFired, ScheduleMissed}

// OptIn reports whether t reaches a reader (a webhook endpoint) only when
// it names t: progress is too chatty for "every type".
func (t Type) OptIn() bool { return t == Progress }

// Valid reports whether t is a known type.
func (t Type) Valid() bool {
	for _, k := range AllTypes {
		if t == k {
			return true
		}
	}
	return false
}

// ParseTypes parses a comma-separated list of types ("" is nil: every type).
func ParseTypes(s string) ([]Type, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Type
	for _, p := range strings.Split(s, ",") {
		t := Type(strings.TrimSpace(p))
		if !t.Valid() {
			return nil, fmt.Errorf("unknown event type %q (types: %s)", t, typeList())
		}
		out = append(out, t)
	}
	return out, nil
}

func typeList() string {
	s := make([]string, len(AllTypes))
	for i, t := range AllTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// Reasons for a SessionReset.
const (
	ResetResumeFailed   = "resume_failed"    // the saved conversation could not be resumed
	ResetContextTooLong = "context_too_long" // the context was too long: restarted clean
)

// Event is one entry of the feed. Fields a type does not use are empty and
// left out of its JSON.
type Event struct {
	ID   string    `json:"id"` // "evt-<seq>"
	Seq  int64     `json:"seq"`
	Type Type      `json:"type"`
	At   time.Time `json:"at"`

	ChatID     string   `json:"chat_id,omitempty"`
	TurnID     string   `json:"turn_id,omitempty"`
	MessageIDs []string `json:"message_ids,omitempty"`
	Text       string   `json:"text,omitempty"`
	MessageID  string   `json:"message_id,omitempty"`
	Error      string   `json:"error,omitempty"`
	Reason     string   `json:"reason,omitempty"`

	RequestID string     `json:"request_id,omitempty"`
	Tool      string     `json:"tool,omitempty"`
	Summary   string     `json:"summary,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Decision  string     `json:"decision,omitempty"`
	By        string     `json:"by,omitempty"`

	ScheduleID  string     `json:"schedule_id,omitempty"`
	ScheduledAt *time.Time `json:"scheduled_at,omitempty"`
	Count       int        `json:"count,omitempty"`
	First       *time.Time `json:"first,omitempty"`
	Last        *time.Time `json:"last,omitempty"`
}

// IDOf is the event id of seq: "evt-<seq>".
func IDOf(seq int64) string { return "evt-" + strconv.FormatInt(seq, 10) }

// SeqOf parses an event id ("evt-42") or a bare sequence number ("42").
func SeqOf(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(s), "evt-"), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not an event sequence number", s)
	}
	return n, nil
}

// WithSeq returns e numbered seq (ID and Seq set).
func (e Event) WithSeq(seq int64) Event {
	e.Seq = seq
	e.ID = IDOf(seq)
	return e
}

// MarshalJSON writes At in RFC 3339 with nanoseconds, in UTC.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		At string `json:"at"`
	}{plain(e), e.At.UTC().Format(time.RFC3339Nano)})
}

// payload is what a store keeps of an event besides its Seq, Type and At.
type payload struct {
	ChatID     string   `json:"chat_id,omitempty"`
	TurnID     string   `json:"turn_id,omitempty"`
	MessageIDs []string `json:"message_ids,omitempty"`
	Text       string   `json:"text,omitempty"`
	MessageID  string   `json:"message_id,omitempty"`
	Error      string   `json:"error,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	RequestID  string   `json:"request_id,omitempty"`
	Tool       string   `json:"tool,omitempty"`
	Summary    string   `json:"summary,omitempty"`
	ExpiresAt  int64    `json:"expires_at,omitempty"` // unix nanoseconds
	Decision   string   `json:"decision,omitempty"`
	By         string   `json:"by,omitempty"`
	ScheduleID string   `json:"schedule_id,omitempty"`
	// Unix nanoseconds.
	ScheduledAt int64 `json:"scheduled_at,omitempty"`
	Count       int   `json:"count,omitempty"`
	First       int64 `json:"first,omitempty"`
	Last        int64 `json:"last,omitempty"`
}

// Payload encodes the fields of e a store keeps besides Seq, Type and At.
func (e Event) Payload() ([]byte, error) {
	p := payload{ChatID: e.ChatID, TurnID: e.TurnID, MessageIDs: e.MessageIDs, Text: e.Text,
		MessageID: e.MessageID, Error: e.Error, Reason: e.Reason,
		RequestID: e.RequestID, Tool: e.Tool, Summary: e.Summary, Decision: e.Decision, By: e.By,
		ScheduleID: e.ScheduleID, Count: e.Count,
		ScheduledAt: nanosOf(e.ScheduledAt), First: nanosOf(e.First), Last: nanosOf(e.Last)}
	if e.ExpiresAt != nil {
		p.ExpiresAt = e.ExpiresAt.UnixNano()
	}
	return json.Marshal(p)
}

// FromPayload rebuilds an event from what Payload kept.
func FromPayload(seq int64, t Type, at time.Time, data []byte) (Event, error) {
	var p payload
	if len(data) > 0 {
		if err := json.Unmarshal(data, &p); err != nil {
			return Event{}, fmt.Errorf("event %d: %w", seq, err)
		}
	}
	e := Event{Type: t, At: at, ChatID: p.ChatID, TurnID: p.TurnID, MessageIDs: p.MessageIDs,
		Text: p.Text, MessageID: p.MessageID, Error: p.Error, Reason: p.Reason,
		RequestID: p.RequestID, Tool: p.Tool, Summary: p.Summary, Decision: p.Decision, By: p.By,
		ScheduleID: p.ScheduleID, Count: p.Count,
		ScheduledAt: timeOf(p.ScheduledAt), First: timeOf(p.First), Last: timeOf(p.Last)}
	if p.ExpiresAt != 0 {
		x := time.Unix(0, p.ExpiresAt).UTC()
		e.ExpiresAt = &x
	}
	return e.WithSeq(seq), nil
}

// nanosOf is t in Unix nanoseconds, 0 for none.
func nanosOf(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixNano()
}

// timeOf is the UTC time of Unix nanoseconds n, nil for 0.
func timeOf(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := time.Unix(0, n).UTC()
	return &t
}

// Query selects events from the feed.
type Query struct {
	// After: only events with a larger Seq. HasAfter false means "from the
	// oldest kept event".
	After    int64
	HasAfter bool
	ChatID   string // "" any chat
	Types    []Type // nil any type
	Limit    int    // at most this many (default 100, at most 1000)
	// Tail, without After, asks for the last Limit events instead of the
	// first ones (still oldest first); next is then the visible mark, so
	// a reader can follow the feed from there.
	Tail bool
}

// Limits of a Query.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrGone is returned for a read from a position older than the oldest
// kept event: events the reader has not seen were purged, and the feed
// says so rather than skip them silently.
type ErrGone struct {
	Oldest int64 // the oldest kept Seq (or the next Seq, if none is kept)
}

func (e *ErrGone) Error() string {
	return fmt.Sprintf("events before seq %d are no longer kept", e.Oldest)
}

// IsGone reports whether err is an ErrGone, and returns it.
func IsGone(err error) (*ErrGone, bool) {
	var g *ErrGone
	ok := errors.As(err, &g)
	return g, ok
}
