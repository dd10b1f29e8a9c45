package postgres

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Notifications (NOTIFY) are hints to the other nodes — a chat's wake-up
// for its owner, the feed's new last seq for their readers — and every one
// has a safety net for its loss (the owner's scan of its chats, the
// listener's poll of the feed counter). They are sent after the commit
// they tell of, in transactions of their own that do not wait for a WAL
// flush, grouped: whatever was queued while one was on its way goes in
// the next, one statement for all of them.
//
// Never inside the write itself: PostgreSQL takes one lock on its
// notification queue, for the whole database, from a notifying
// transaction's pre-commit to its end, WAL flush included, so every
// notifying commit of every node would wait for the one before it (with
// three nodes that serialized most accepts behind the turns' commits).

// notifySQL sends every (channel, payload) pair given.
const notifySQL = `SELECT set_config('synchronous_commit', 'off', true),
	count(pg_notify(c, p)) FROM unnest($1::text[], $2::text[]) AS t(c, p)`

// feedPoll is how often the feed's listener reads the counter, the safety
// net for a notification lost (a node that died after its commit, before
// its NOTIFY).
const feedPoll = time.Second

// notifyTimeout bounds one sending: a hint that late is of little use,
// and Close (which ends it at once) need not wait for it.
const notifyTimeout = 5 * time.Second

// note is one notification to send.
type note struct{ channel, payload string }

// notifier queues the notifications and sends them, one flight at a time.
type notifier struct {
	mu      sync.Mutex
	waiting map[note]bool
	feed    int64 // the feed's last seq to announce (0: none)
	flying  bool
}

// notify queues a notification on channel; it is sent soon after, unless
// the DB is closed first.
func (s *DB) notify(channel, payload string) {
	s.queueNote(func(n *notifier) {
		if n.waiting == nil {
			n.waiting = map[note]bool{}
		}
		n.waiting[note{channel, payload}] = true
	})
}

// notifyFeed queues the announcement that the feed's last seq is now last
// (only the largest queued goes).
func (s *DB) notifyFeed(last int64) {
	s.queueNote(func(n *notifier) { n.feed = max(n.feed, last) })
}

// queueNote queues a notification with add and starts the sending unless
// it runs.
func (s *DB) queueNote(add func(*notifier)) {
	n := &s.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.closed.Load() {
		return
	}
	add(n)
	if !n.flying {
		n.flying = true
		s.bg.Add(1)
		go s.sendNotes()
	}
}

// sendNotes sends the queued notifications until none is left. A failure
// drops them: each has its safety net.
func (s *DB) sendNotes() {
	defer s.bg.Done()
	n := &s.notes
	for {
		n.mu.Lock()
		if (len(n.waiting) == 0 && n.feed == 0) || s.closed.Load() {
			n.flying = false
			n.mu.Unlock()
			return
		}
		chans := make([]string, 0, len(n.waiting)+1)
		pays := make([]string, 0, len(n.waiting)+1)
		for k := range n.waiting {
			chans, pays = append(chans, k.channel), append(pays, k.payload)
		}
		if n.feed > 0 {
			chans, pays = append(chans, eventsChannel), append(pays, strconv.FormatInt(n.feed, 10))
		}
		clear(n.waiting)
		n.feed = 0
		n.mu.Unlock()
		ctx, cancel := context.WithTimeout(s.bgctx, notifyTimeout)
		_, _ = s.pool.Exec(ctx, notifySQL, chans, pays)
		cancel()
	}
}

// closeNotes stops the queue: nothing is sent any more (Close, before it
// waits for the background work).
func (s *DB) closeNotes() {
	s.notes.mu.Lock()
	s.closed.Store(true)
	s.notes.mu.Unlock()
}
