package store

import (
	"context"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

// Backend is the durable store as the rest of dispatch uses it: the message
// queue, the saved sessions, the event feed and the webhook outbox. Two
// implementations keep the same contract (internal/store/storetest runs
// one suite against both): Store, the one policy, over the embedded SQLite
// database of a single node (internal/store/sqlite) or the PostgreSQL
// database that several nodes share (internal/store/postgres).
//
// The contract, beyond each method's own documentation on Store:
//   - a write that returns nil is committed durably (Claim and the
//     outbox's delivery bookkeeping excepted: their loss in a power
//     failure is harmless), and one that fails changed nothing;
//   - a chat's messages are claimed in Seq order, and a message that
//     failed before is claimed alone;
//   - a message is done if and only if its turn's reply event exists;
//   - a reader that has been given the events up to seq N never later
//     finds a new event with seq ≤ N;
//   - storage failures are classified (IsStorage) so that callers retry
//     them with backoff.
type Backend interface {
	// Messages.
	Accept(ctx context.Context, chatID, text, clientID string) (id string, dup bool, err error)
	Claim(ctx context.Context, chatID string, limit int) (batch []Message, more bool, err error)
	Complete(ctx context.Context, ids []string, reply string) error
	CompleteTurn(ctx context.Context, ids []string, reply string, r SessionRecord) error
	Requeue(ctx context.Context, ids []string, errText string) error
	RequeueKept(ctx context.Context, ids []string, errText, keptIn string) error
	Fail(ctx context.Context, ids []string, errText string, maxAttempts int) (dead []string, err error)
	ResetInflight(ctx context.Context) (int, error)
	Retry(ctx context.Context, id string) error
	Drop(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (Message, error)
	ByClient(ctx context.Context, chatID, clientID string) (id string, ok bool, err error)
	List(ctx context.Context, f Filter) ([]Message, error)
	ListPage(ctx context.Context, f Filter, after int64, limit, clip int) (page []Listed, more bool, err error)
	Counts(ctx context.Context) (Counts, error)
	ChatsWithPending(ctx context.Context) ([]string, error)
	OldestPending(ctx context.Context, chatID string) (time.Time, error)
	PendingStats(ctx context.Context) (map[string]PendingStat, error)
	HasPending(ctx context.Context, chatID string) (bool, error)
	PurgeDone(ctx context.Context, cutoff time.Time, limit int) (int, error)

	// Sessions.
	SaveSession(ctx context.Context, r SessionRecord) error
	Sessions(ctx context.Context) ([]SessionRecord, error)
	SessionRecord(ctx context.Context, chat string) (r SessionRecord, found bool, err error)

	// The event feed.
	AppendEvent(ctx context.Context, ev events.Event) (events.Event, error)
	RecordReset(ctx context.Context, chat, reason string) error
	Events(ctx context.Context, q events.Query) (evs []events.Event, next int64, err error)
	EventsVisible() (int64, <-chan struct{})
	EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error)
	EventsOldest(ctx context.Context) (oldest, last int64, err error)
	PurgeEvents(ctx context.Context, cutoff time.Time, limit int) (int, error)
	RecentExchanges(ctx context.Context, chat string, n int) ([]Exchange, error)

	// The webhook outbox.
	SetWebhookFanout(f func(events.Type) []string)
	OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]OutboxRow, error)
	OutboxFailed(ctx context.Context, endpoint string, limit int) ([]OutboxRow, error)
	OutboxCounts(ctx context.Context) (map[string][2]int, error)
	OutboxDelivered(ctx context.Context, endpoint string, seqs []int64) error
	OutboxAttempt(ctx context.Context, r OutboxRow) error
	OutboxGiveUp(ctx context.Context, r OutboxRow) error
	OutboxRetry(ctx context.Context, endpoint string) ([]OutboxRow, error)

	// Agents' conversation files.
	ConversationFiles(ctx context.Context, chat string) ([]ConvFile, error)
	SaveConversation(ctx context.Context, chat string, changes []ConvChange) error
	LoadConversation(ctx context.Context, chat string) (map[string][]byte, error)

	// Permission requests and rules (permission.Store), and progress.
	permission.Store
	AppendProgress(ctx context.Context, ev events.Event) error
	DropProgress(ctx context.Context, chat string) (int, error)

	// Channels (channels.go).
	ChannelBackend

	// Schedules (schedules.go).
	ScheduleBackend

	// Health and lifecycle.
	Ping(ctx context.Context) error
	Check(ctx context.Context) error
	CheckIdentity() error
	InjectWriteFault(f FaultFunc)
	Close() error
}
