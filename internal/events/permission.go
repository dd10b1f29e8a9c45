package events

import "time"

// NewPermissionRequest is the event of chat's agent asking, as request id,
// whether it may run tool (summary: what the call does); unanswered, it is
// denied at expires.
func NewPermissionRequest(at time.Time, chat, id, tool, summary string, expires time.Time) Event {
	x := expires.UTC()
	return Event{Type: PermissionRequest, At: at, ChatID: chat, RequestID: id, Tool: tool, Summary: summary, ExpiresAt: &x}
}

// NewPermissionDecided is the event of request id being closed with
// decision by by (reason: why an expired request expired, else "").
func NewPermissionDecided(at time.Time, chat, id, tool, decision, by, reason string) Event {
	return Event{Type: PermissionDecided, At: at, ChatID: chat, RequestID: id, Tool: tool, Decision: decision, By: by, Reason: reason}
}

// NewProgress is the event of chat's running turn starting to use tool.
func NewProgress(at time.Time, chat, turn, tool, summary string) Event {
	return Event{Type: Progress, At: at, ChatID: chat, TurnID: turn, Tool: tool, Summary: summary}
}
