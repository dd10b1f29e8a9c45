package store

import (
	"context"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

// The store is written once, as policy over a driver (in the manner of
// riverqueue/river's riverdriver): Store holds what the queue means —
// claims that isolate a message that failed before, dead letters, the
// reply events of a turn, the webhook outbox, fencing, conversations —
// and a Driver holds one SQL dialect: its connections, how it groups and
// commits transactions, how it numbers the event feed, and one method per
// query. internal/store/sqlite and internal/store/postgres are the two
// dialects.
//
// Adding storage for a feature is one place of policy here (a Store
// method, its types, a line in Backend and a test in storetest) plus, in
// each dialect, its table in the migrations and one method per query
// (the Tx method for a write, the Reader method for a read).

// Driver is one SQL dialect under the store's policy. T is the dialect's
// write transaction (its one-query write operations, at least Tx).
type Driver[T Tx] interface {
	Reader
	// Write runs fn in one write transaction and commits it: a nil result
	// means committed durably, unless lazy (the commit need not be flushed
	// before Write returns: the outcome of a Claim and the outbox's
	// bookkeeping, whose loss in a power failure is harmless). A failed fn
	// changes nothing. The caller's ctx bounds the wait to begin; once fn
	// has run, Write waits for the commit regardless, so a committed
	// change is never reported as failed. Errors are classified (IsStorage)
	// and a write after Close is ErrClosed.
	Write(ctx context.Context, lazy bool, fn func(ctx context.Context, tx T) error) error
	// Accept stores m as a new pending message in a commit of its own,
	// durably, taking its place in the chat's line as LockChat and
	// InsertMessage would in a Write (false: its id or its (chat, client
	// id) is taken, nothing stored). It is Write's contract for the
	// store's most frequent write, so that a dialect can make it as cheap
	// as one statement (PostgreSQL: one round trip instead of four).
	Accept(ctx context.Context, m NewMessage) (bool, error)
	// Visible is the event feed's visible mark and a channel closed when
	// it next moves up (see Backend.EventsVisible).
	Visible() (int64, <-chan struct{})
	// PurgeEvents removes one chunk of at most n events at the head of the
	// feed older than cutoff (unix nanoseconds), with their webhook
	// deliveries, and records the new retention horizon; readers from
	// below the horizon get an *events.ErrGone, never a gap. done reports
	// that no older event is left.
	PurgeEvents(ctx context.Context, cutoff int64, n int) (got int, done bool, err error)
	// Check proves the database readable and sound.
	Check(ctx context.Context) error
	// CheckIdentity proves the database is still the one opened (a file
	// store's probe; a server's always passes).
	CheckIdentity() error
	Close() error
}

// Tx is a write transaction's one-query operations, the same in every
// dialect. Times are unix nanoseconds (Nanos). Operations on messages by
// id leave alone the ids not in the state they name.
type Tx interface {
	// LockChat orders the writes that take a place in chat's line (accept,
	// claim, retry) with each other until the transaction ends.
	LockChat(ctx context.Context, chat string) error
	// ChatsOf returns the chats of the messages ids.
	ChatsOf(ctx context.Context, ids []string) ([]string, error)

	// InsertMessage stores a new pending message; false when its id, or
	// its (chat, client id), is already taken (nothing stored).
	InsertMessage(ctx context.Context, m NewMessage) (bool, error)
	// MessageByClient returns the id and text of chat's message with
	// client id client.
	MessageByClient(ctx context.Context, chat, client string) (id, text string, err error)
	// PendingMessages returns chat's first n pending messages in Seq order.
	PendingMessages(ctx context.Context, chat string, n int) ([]Message, error)
	// MarkInflight makes the messages msgs (by Seq) inflight, counting an
	// attempt.
	MarkInflight(ctx context.Context, msgs []Message, now int64) error
	// MarkDone makes the inflight ones of ids done with reply as turn,
	// clearing their error, and returns them.
	MarkDone(ctx context.Context, ids []string, reply, turn string, now int64) ([]Answered, error)
	// MarkPending puts the inflight ones of ids back to pending with
	// errText, recording keptIn unless it is empty.
	MarkPending(ctx context.Context, ids []string, errText, keptIn string, now int64) error
	// MarkFailed counts a failure for the inflight ones of ids, with
	// errText: those reaching maxAttempts failures become dead, the
	// others pending. It returns them with their new state.
	MarkFailed(ctx context.Context, ids []string, errText string, maxAttempts int, now int64) ([]Failed, error)
	// ResetInflight puts every inflight message back to pending.
	ResetInflight(ctx context.Context, now int64) (int64, error)
	// DeadChat returns the chat of the dead message id (ErrNotFound: no
	// dead message has that id).
	DeadChat(ctx context.Context, id string) (string, error)
	// RequeueDead makes the dead message id pending with no failures and a
	// new Seq (the back of its chat's line); false: not dead.
	RequeueDead(ctx context.Context, id string, now int64) (bool, error)
	// DeleteDead deletes the dead message id; false: not dead.
	DeleteDead(ctx context.Context, id string) (bool, error)
	// DeleteDone deletes at most n done messages updated before before.
	DeleteDone(ctx context.Context, before int64, n int) (int64, error)

	// SessionFailed returns whether chat's saved session is failed (false
	// when there is none), holding its row until the transaction ends.
	SessionFailed(ctx context.Context, chat string) (bool, error)
	// UpsertSession inserts or replaces r (created is its creation time;
	// given zero keeps an existing row's).
	UpsertSession(ctx context.Context, r SessionRecord, created, given int64) error

	// InsertEvent appends *ev to the feed and queues it for endpoints in
	// the same transaction. The dialect numbers it (ev.Seq and ev.ID are
	// set now or, at the latest, by the commit) so that a reader never
	// finds a new event behind one it was given.
	InsertEvent(ctx context.Context, ev *events.Event, endpoints []string) error

	// OutboxDelete deletes endpoint's deliveries of seqs.
	OutboxDelete(ctx context.Context, endpoint string, seqs []int64) error
	// OutboxAttempt records r's failed attempt on its pending row.
	OutboxAttempt(ctx context.Context, r OutboxRow, now int64) error
	// OutboxGiveUp marks r's pending row failed.
	OutboxGiveUp(ctx context.Context, r OutboxRow, now int64) error
	// OutboxRetry makes endpoint's failed rows pending with a fresh budget
	// and returns them.
	OutboxRetry(ctx context.Context, endpoint string, now int64) ([]OutboxRow, error)

	// SaveConversationFile applies c to chat's saved conversation file.
	SaveConversationFile(ctx context.Context, chat string, c ConvChange) error

	// InsertPermission stores the new, open permission request r.
	InsertPermission(ctx context.Context, r permission.Request) error
	// PermissionForUpdate returns permission request id (ErrNotFound),
	// holding its row until the transaction ends.
	PermissionForUpdate(ctx context.Context, id string) (permission.Request, error)
	// ClosePermission records r's decision on its open row.
	ClosePermission(ctx context.Context, r permission.Request) error
	// UpsertPermissionRule inserts rl or replaces the rule of its chat
	// and tool.
	UpsertPermissionRule(ctx context.Context, rl permission.Rule) error
	// DeletePermissionRule deletes chat's rule for tool; false: none.
	DeletePermissionRule(ctx context.Context, chat, tool string) (bool, error)
	// DeleteProgress deletes chat's progress events ("" every chat's)
	// with their webhook deliveries.
	DeleteProgress(ctx context.Context, chat string) (int64, error)

	// SetMeta sets the bookkeeping value k.
	SetMeta(ctx context.Context, k string, v int64) error

	ChannelTx  // channels.go
	ScheduleTx // schedules.go
}

// Reader is the dialect's one-query reads, outside any write.
type Reader interface {
	Message(ctx context.Context, id string) (Message, error) // ErrNotFound
	// Messages returns at most limit messages matching f (its State valid
	// or empty) in Seq order.
	Messages(ctx context.Context, f Filter, limit int) ([]Message, error)
	// MessagePage is Messages after Seq after, with texts clipped to clip
	// characters.
	MessagePage(ctx context.Context, f Filter, after int64, limit, clip int) ([]Listed, error)
	Counts(ctx context.Context) (Counts, error)
	ChatsWithPending(ctx context.Context) ([]string, error)
	// OldestPending is the creation time of chat's oldest pending message
	// (0: none).
	OldestPending(ctx context.Context, chat string) (int64, error)
	PendingStats(ctx context.Context) (map[string]PendingStat, error)
	HasPending(ctx context.Context, chat string) (bool, error)
	// RecentTurns returns the messages of chat's last n answered turns in
	// Seq order.
	RecentTurns(ctx context.Context, chat string, n int) ([]TurnMessage, error)

	Sessions(ctx context.Context) ([]SessionRecord, error) // by chat id
	Session(ctx context.Context, chat string) (SessionRecord, bool, error)

	// Events reads the feed (q's limit already set): see Backend.Events.
	Events(ctx context.Context, q events.Query) ([]events.Event, int64, error)
	EventsBySeq(ctx context.Context, seqs []int64) ([]events.Event, error)
	// EventsOldest returns the oldest kept seq (the horizon + 1 when none
	// is kept) and the newest committed one.
	EventsOldest(ctx context.Context) (oldest, last int64, err error)

	// OutboxPending returns endpoint's pending rows after seq after (never
	// past the feed's visible mark), at most limit, in seq order.
	OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]OutboxRow, error)
	OutboxFailed(ctx context.Context, endpoint string, limit int) ([]OutboxRow, error)
	// OutboxCounts returns how many rows each endpoint has in each state.
	OutboxCounts(ctx context.Context) ([]OutboxCount, error)

	ConversationFiles(ctx context.Context, chat string) ([]ConvFile, error)

	// Permission returns permission request id (ErrNotFound).
	Permission(ctx context.Context, id string) (permission.Request, error)
	// OpenPermissions returns chat's open requests ("" every chat's) by
	// creation time.
	OpenPermissions(ctx context.Context, chat string) ([]permission.Request, error)
	// PermissionRules returns chat's rules ("" every chat's) by chat and
	// tool.
	PermissionRules(ctx context.Context, chat string) ([]permission.Rule, error)
	// ConversationChunks returns the saved chunks of chat's files (within
	// each file's size), by path and offset.
	ConversationChunks(ctx context.Context, chat string) ([]ConvChunk, error)

	ChannelReader  // channels.go
	ScheduleReader // schedules.go
}

// NewMessage is a message Accept stores.
type NewMessage struct {
	ID, ChatID, Text string
	ClientID         string // "": none
	At               int64
}

// Failed is a message MarkFailed counted a failure for.
type Failed struct {
	Seq        int64
	ID, ChatID string
	State      State
}

// TurnMessage is one message of an answered turn (RecentTurns).
type TurnMessage struct {
	TurnID, Text, Reply string
}

// OutboxCount is how many of endpoint's rows are in state.
type OutboxCount struct {
	Endpoint, State string
	N               int
}

// ConvChunk is a piece of a saved conversation file.
type ConvChunk struct {
	Path string
	Data []byte
}

// Fence checks, inside a write's transaction, that this node still holds
// the leases of the chats the write is for, holding them until the
// commit (several nodes on one database: internal/cluster provides it).
// An error (wrapping ErrFenced) refuses the write.
type Fence[T Tx] interface {
	Hold(ctx context.Context, tx T, chats []string) error
}

// Waker tells a chat's owner node, after a commit, that messages were
// committed for the chat (several nodes: internal/cluster provides it).
type Waker interface {
	Wake(ctx context.Context, chat string)
}
