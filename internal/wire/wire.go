// Package wire is the control API's contract: the JSON shapes the daemon
// sends and receives (status, sessions, messages, queue pages, events,
// webhooks), the input rules every side checks (chat ids, sizes), and the
// control socket's path limit. The daemon (internal/api, the supervisor)
// and every client (the CLI, doctor, bench, the test helpers) use these
// types, so a field cannot drift between them.
//
// It imports nothing of dispatch but the event type, so any package can use
// it. The JSON field names are a public contract: never rename one.
package wire

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/events"
)

// Input limits: a chat id is 1–256 bytes, a text at most 1 MiB, message
// and client ids at most 256 bytes; a queue page holds at most
// MaxQueuePage messages.
const (
	MaxChatID    = 256
	MaxText      = 1 << 20
	MaxID        = 256
	MaxQueuePage = 1000
)

// --- status ---

// Status is GET /v1/status and `dispatch status --json`.
type Status struct {
	Daemon   DaemonStatus    `json:"daemon"`
	Sessions []SessionStatus `json:"sessions"`
	Queue    QueueStatus     `json:"queue"`
	// Webhooks are the webhook endpoints with their delivery state (never
	// a secret).
	Webhooks []EndpointStatus `json:"webhooks,omitempty"`
	// Nodes are the nodes sharing the PostgreSQL database, with their
	// last heartbeat (absent on SQLite).
	Nodes []NodeStatus `json:"nodes,omitempty"`
}

// NodeStatus is one node of several sharing a PostgreSQL database.
type NodeStatus struct {
	ID string `json:"id"`
	// Self marks the node that answered.
	Self bool `json:"self,omitempty"`
	// Live: a heartbeat within node.lease_ttl and not stopped cleanly.
	Live          bool    `json:"live"`
	Stopped       bool    `json:"stopped,omitempty"`
	LastHeartbeat string  `json:"last_heartbeat"`
	HeartbeatAge  float64 `json:"heartbeat_age_seconds"`
	StartedAt     string  `json:"started_at"`
	// Chats is how many chats the node holds leases on.
	Chats   int `json:"chats"`
	MaxLive int `json:"max_live"`
}

// DaemonStatus is the daemon's own part of the status.
type DaemonStatus struct {
	PID           int     `json:"pid"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	API           string  `json:"api"` // up | down
	APIHeld       int     `json:"api_held"`
	Outages       int     `json:"api_outages"`
	OutageSeconds float64 `json:"api_outage_seconds"`
	Healthy       bool    `json:"healthy"`
	// ResourceError is the daemon's own resource error (out of file
	// descriptors, memory or processes) of the last minute: not any
	// session's fault, and retried.
	ResourceError string `json:"resource_error,omitempty"`
	// StoreLost says the database file was removed, replaced or truncated
	// under the daemon: nothing is accepted until it is restarted.
	StoreLost string `json:"store_lost,omitempty"`
	// StoreFull says the store refuses writes for lack of space: accepts
	// are answered 507 and sessions wait to write their turns.
	StoreFull string `json:"store_full,omitempty"`
	// Node is this daemon's node.id (PostgreSQL only).
	Node string `json:"node,omitempty"`
}

// SessionStatus is one session in the status (and GET /v1/sessions).
type SessionStatus struct {
	ChatID       string  `json:"chat_id"`
	State        string  `json:"state"`
	Alive        bool    `json:"alive"`
	Healthy      bool    `json:"healthy"`
	HealthReason string  `json:"health_reason"`
	Busy         bool    `json:"busy"`
	ErrorCount   int     `json:"error_count"`
	IdleSeconds  float64 `json:"idle_seconds"`
	QueueDepth   int     `json:"queue_depth"`
	Turns        int64   `json:"turns"`
	Restarts     int64   `json:"restarts"`
	SessionID    string  `json:"session_id"`
	// Exempt is true when the session is never idle-reaped, for any
	// reason: it is the master session, its id ends in the exempt suffix,
	// or an operator flagged it. ExemptFlag is only the operator's flag
	// (`dispatch sessions exempt CHAT`, cleared with --off).
	Exempt       bool   `json:"exempt"`
	ExemptFlag   bool   `json:"exempt_flag"`
	Pid          int    `json:"pid,omitempty"`
	LastActivity string `json:"last_activity"`
	// StopReason says why a stopped session has no agent: idle, killed,
	// hibernated.
	StopReason string `json:"stop_reason,omitempty"`
	// RSSBytes is a live agent's resident memory, its whole process group
	// counted, read when status is asked.
	RSSBytes uint64 `json:"rss_bytes,omitempty"`
	// StoreError is the store write the session is retrying, while it
	// fails (a full disk, an I/O error).
	StoreError string `json:"store_error,omitempty"`
	// Owner is the node holding the chat's lease (PostgreSQL only; "" when
	// no node holds it now). Sessions owned by other nodes are listed from
	// their saved records: their live figures (pid, memory, health) are on
	// the owner's own status.
	Owner string `json:"owner,omitempty"`
}

// QueueStatus counts the stored messages by state.
type QueueStatus struct {
	Pending  int `json:"pending"`
	Inflight int `json:"inflight"`
	Dead     int `json:"dead"`
	Done     int `json:"done"`
}

// --- messages ---

// MessageIn is the body of POST /v1/messages. ClientID is the sender's own
// key for the message, scoped to the chat: a resend with the same one is a
// duplicate. ID is refused: message ids are always dispatch's own.
type MessageIn struct {
	ChatID   string `json:"chat_id"`
	Text     string `json:"text"`
	ClientID string `json:"client_id,omitempty"`
	ID       string `json:"id,omitempty"`
}

// Accepted is the answer to POST /v1/messages.
type Accepted struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
	// Paused is true when an operator paused the chat: the message waits
	// until "dispatch sessions resume".
	Paused bool `json:"paused,omitempty"`
}

// MessageOut is one message as the API shows it (GET /v1/messages/{id}
// without its text, GET /v1/queue/{id} with it).
type MessageOut struct {
	ID        string `json:"id"`
	ChatID    string `json:"chat_id"`
	ClientID  string `json:"client_id"`
	State     string `json:"state"` // pending | inflight | done | dead
	Attempts  int    `json:"attempts"`
	Failures  int    `json:"failures"`
	Text      string `json:"text,omitempty"`
	Reply     string `json:"reply"`
	Error     string `json:"error"`
	CreatedAt string `json:"created_at"` // RFC 3339, UTC
	UpdatedAt string `json:"updated_at"`
	// TurnID is the turn that answered the message (its reply event
	// carries the same id); "" until it is done.
	TurnID string `json:"turn_id"`
	// Held is set on a message that waits at a session that cannot go on
	// without an operator (it failed), with the reason: a sender waiting
	// for its reply can stop waiting.
	Held string `json:"held,omitempty"`
	// Paused is set on a waiting message of a chat an operator paused: it
	// goes on after "dispatch sessions resume".
	Paused bool `json:"paused,omitempty"`
}

// ListedOut is one message of a queue listing.
type ListedOut struct {
	MessageOut
	// Truncated is true when text, reply or error were clipped; the sizes
	// are the full ones in bytes.
	Truncated  bool `json:"truncated,omitempty"`
	TextBytes  int  `json:"text_bytes"`
	ReplyBytes int  `json:"reply_bytes,omitempty"`
	ErrorBytes int  `json:"error_bytes,omitempty"`
}

// QueuePage is the answer to GET /v1/queue: the page, and the cursor to
// pass as after= for the next one ("" on the last page).
type QueuePage struct {
	Messages []ListedOut `json:"messages"`
	Next     string      `json:"next,omitempty"`
}

// ChatRequest is the body of the session operations (POST
// /v1/sessions/{kill,restart,exempt,pause,resume}).
type ChatRequest struct {
	ChatID string `json:"chat_id"`
	Clean  bool   `json:"clean,omitempty"`
	Off    bool   `json:"off,omitempty"`
}

// StopOut answers POST /v1/sessions/stop: Stopped is false when no turn
// was running.
type StopOut struct {
	OK      bool   `json:"ok"`
	ChatID  string `json:"chat_id"`
	Stopped bool   `json:"stopped"`
}

// IDRequest is the body of the queue operations (POST
// /v1/queue/{retry,drop}).
type IDRequest struct {
	ID string `json:"id"`
}

// --- events and webhooks ---

// EventsOut is the answer of GET /v1/events.
type EventsOut struct {
	Events []events.Event `json:"events"`
	Next   int64          `json:"next"`
}

// GoneOut is the 410 answer for a position older than the oldest kept
// event.
type GoneOut struct {
	Error  string `json:"error"`
	Oldest int64  `json:"oldest"`
}

// WebhookRetry is the body of POST /v1/webhooks/retry.
type WebhookRetry struct {
	Endpoint string `json:"endpoint"`
}

// WebhookRetried is the answer of POST /v1/webhooks/retry.
type WebhookRetried struct {
	Retried int `json:"retried"`
}

// WebhooksOut is the answer of GET /v1/webhooks.
type WebhooksOut struct {
	Webhooks []EndpointStatus `json:"webhooks"`
}

// EndpointStatus is one webhook endpoint as status and `dispatch webhooks
// list` show it.
type EndpointStatus struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"` // scheme, host and path only
	Events     []string `json:"events"`
	Pending    int      `json:"pending"`
	Failed     int      `json:"failed"`
	Delivered  int64    `json:"delivered"` // since the daemon started
	Retries    int64    `json:"retries"`   // failed attempts that will be retried, since start
	GaveUp     int64    `json:"gave_up"`   // deliveries given up, since start
	LagSeconds float64  `json:"lag_seconds"`
	// LastError is the latest failed attempt's error, until a delivery
	// succeeds again (failed deliveries keep their own errors).
	LastError string `json:"last_error,omitempty"`
	// FailedDeliveries lists failed deliveries (the oldest, up to a limit).
	FailedDeliveries []Delivery `json:"failed_deliveries,omitempty"`
}

// Delivery is one failed webhook delivery.
type Delivery struct {
	EventID  string `json:"event_id"`
	Seq      int64  `json:"seq"`
	ChatID   string `json:"chat_id,omitempty"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
	At       string `json:"at"` // when it gave up
}

// ErrorOut is every error answer: {"error": "…"} with a 4xx or 5xx status.
type ErrorOut struct {
	Error string `json:"error"`
}

// --- input rules ---

// ChatIDProblem applies the one chat id rule, used by the API for every
// request and by the config for sessions.master and sessions.trusted: 1–256
// bytes of printable UTF-8 (a plain space allowed inside), no control or
// other non-printable character (U+00A0 and other unusual spaces included),
// and no leading or trailing white space (trimming instead would silently
// merge two chats). It returns "" for a valid id, else what is wrong,
// worded to follow the name of the field ("chat_id is required").
func ChatIDProblem(s string) string {
	if p := keyProblem(s, MaxChatID); p != "" {
		return p
	}
	if strings.TrimFunc(s, unicode.IsSpace) != s {
		return "has leading or trailing white space"
	}
	return ""
}

// ValidChatID checks a chat id (see ChatIDProblem).
func ValidChatID(s string) error {
	if p := ChatIDProblem(s); p != "" {
		return errors.New("chat_id " + p)
	}
	return nil
}

// ValidKey checks a message id or client id named name: 1–limit bytes of
// printable UTF-8.
func ValidKey(name, s string, limit int) error {
	if p := keyProblem(s, limit); p != "" {
		return errors.New(name + " " + p)
	}
	return nil
}

func keyProblem(s string, limit int) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > limit:
		return fmt.Sprintf("is %d bytes; the limit is %d", len(s), limit)
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Sprintf("contains a control or non-printable character (%U)", r)
		}
	}
	return ""
}

// MaxSocketPath is the longest unix socket path the OS accepts: sun_path
// is 108 bytes on Linux and 104 elsewhere, the terminating NUL included.
func MaxSocketPath() int {
	if runtime.GOOS == "linux" {
		return 107
	}
	return 103
}

// SocketPathProblem returns "" when path fits in a unix socket address,
// else why it does not.
func SocketPathProblem(path string) string {
	if n := len(path); n > MaxSocketPath() {
		return fmt.Sprintf("control socket path %q is %d bytes, over the %d-byte unix socket limit", path, n, MaxSocketPath())
	}
	return ""
}

// PermissionOut is one permission request (GET /v1/permissions, the
// answer to POST /v1/permissions/{id}). Decision is empty while it is
// open; times are RFC 3339.
type PermissionOut struct {
	ID        string `json:"id"`
	ChatID    string `json:"chat_id"`
	Tool      string `json:"tool"`
	Summary   string `json:"summary"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
	Decision  string `json:"decision,omitempty"`
	DecidedBy string `json:"decided_by,omitempty"`
	DecidedAt string `json:"decided_at,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// PermissionsOut is GET /v1/permissions: the open requests, oldest first.
type PermissionsOut struct {
	Requests []PermissionOut `json:"requests"`
}

// DecisionIn is POST /v1/permissions/{id}: allow, allow_always or deny,
// and optionally who answers (default: the API's caller).
type DecisionIn struct {
	Decision string `json:"decision"`
	By       string `json:"by,omitempty"`
}

// RuleOut is one allow_always rule: chat's agent may use tool unasked.
type RuleOut struct {
	ChatID    string `json:"chat_id"`
	Tool      string `json:"tool"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by,omitempty"`
}

// RulesOut is GET /v1/permissions/rules.
type RulesOut struct {
	Rules []RuleOut `json:"rules"`
}

// RuleRequest names a rule to remove (POST /v1/permissions/rules/remove).
type RuleRequest struct {
	ChatID string `json:"chat_id"`
	Tool   string `json:"tool"`
}
