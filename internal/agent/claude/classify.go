package claude

import (
	"encoding/json"
	"strings"

	"github.com/dispatchd/dispatch/internal/agent"
)

// ResultLine is the part of a stream-json "result" line that dispatch needs.
type ResultLine struct {
	Subtype   string
	IsError   bool
	Result    string
	SessionID string
	// APIErrorStatus is the HTTP status of a failed API call; 0 when the
	// CLI reported null (the API could not be reached) or nothing.
	APIErrorStatus int
	TerminalReason string
	Errors         []string
	// ResumeFailed is set by the driver, never parsed: the line is a
	// --resume start's report that its conversation does not exist.
	ResumeFailed bool
	// Denials are the tool calls refused during the turn (set by the
	// driver from permission_denials).
	Denials []agent.Denial
}

// authHint is appended to Auth errors: the operator has to act.
const authHint = " (check ANTHROPIC_API_KEY or run `claude login`)"

var (
	// outageMarkers identify an unreachable or overloaded API when the CLI
	// gives no HTTP status.
	outageMarkers = []string{
		"unable to connect to api", "connection error", "econnrefused",
		"econnreset", "etimedout", "timed out", "fetch failed", "overloaded",
		"socket hang up",
	}
	authMarkers = []string{
		"invalid x-api-key", "invalid api key", "authentication", "please run /login",
	}
)

// Classify turns a result line into a *agent.TurnError, or nil when the
// turn succeeded. It is pure so the rules can be tested as a table:
//
//   - context too long (terminal_reason prompt_too_long, "prompt is too
//     long") → ContextTooLong: resuming would fail the same way;
//   - ResumeFailed (set by the driver from structured facts) → ResumeFailed;
//     words like "No conversation found" inside an error text never are;
//   - status 401/403 → Auth; 5xx (529 included), 429, 408 → Outage;
//   - auth wording → Auth; with no status, connection/timeout/overload
//     wording → Outage;
//   - anything else → Fault.
func Classify(r ResultLine) *agent.TurnError {
	if !r.IsError {
		return nil
	}
	msg := r.message()
	text := strings.ToLower(msg)
	te := func(k agent.Kind) *agent.TurnError {
		return &agent.TurnError{Kind: k, Status: r.APIErrorStatus, Msg: msg}
	}
	st := r.APIErrorStatus
	switch {
	case r.TerminalReason == "prompt_too_long" || strings.Contains(text, "prompt is too long"):
		return te(agent.ContextTooLong)
	case r.ResumeFailed:
		return te(agent.ResumeFailed)
	case st == 401 || st == 403:
		e := te(agent.Auth)
		e.Msg += authHint
		return e
	case st >= 500 && st <= 599, st == 429, st == 408:
		return te(agent.Outage)
	case containsAny(text, authMarkers):
		e := te(agent.Auth)
		e.Msg += authHint
		return e
	case st == 0 && containsAny(text, outageMarkers):
		return te(agent.Outage)
	}
	return te(agent.Fault)
}

// message is the human-readable text of an error result.
func (r ResultLine) message() string {
	parts := make([]string, 0, 1+len(r.Errors))
	if r.Result != "" {
		parts = append(parts, r.Result)
	}
	parts = append(parts, r.Errors...)
	if len(parts) == 0 {
		if r.Subtype != "" {
			return "error result: " + r.Subtype
		}
		return "error result"
	}
	return strings.Join(parts, "; ")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// parseResult decodes a result line leniently: a field of an unexpected
// shape must not lose the result (the turn would wait forever), so errors
// and api_error_status accept whatever JSON they carry.
func parseResult(line []byte) (ResultLine, error) {
	var w struct {
		Subtype        string            `json:"subtype"`
		IsError        bool              `json:"is_error"`
		Result         json.RawMessage   `json:"result"`
		SessionID      string            `json:"session_id"`
		APIErrorStatus json.RawMessage   `json:"api_error_status"`
		TerminalReason string            `json:"terminal_reason"`
		Errors         []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(line, &w); err != nil {
		return ResultLine{}, err
	}
	r := ResultLine{
		Subtype:        w.Subtype,
		IsError:        w.IsError,
		Result:         rawString(w.Result),
		SessionID:      w.SessionID,
		TerminalReason: w.TerminalReason,
	}
	var st json.Number
	if json.Unmarshal(w.APIErrorStatus, &st) == nil {
		if n, err := st.Int64(); err == nil {
			r.APIErrorStatus = int(n)
		}
	}
	for _, e := range w.Errors {
		if s := rawString(e); s != "" {
			r.Errors = append(r.Errors, s)
		}
	}
	return r, nil
}

// rawString is a JSON string's value, or the raw JSON of anything else
// (empty for null or absent).
func rawString(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}
