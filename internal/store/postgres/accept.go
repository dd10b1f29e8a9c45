package postgres

import (
	"context"
	"sync"

	"github.com/dispatchd/dispatch/internal/store"
)

// Group commit of accepts. An accept must be durable when it is answered,
// so each one waits for a WAL flush; what need not be paid per accept is
// the rest: a transaction, a commit record, a round trip and the server
// backend's wake-up. Accepts that arrive while others are on their way to
// the server wait in a queue and then go together, as one statement in
// one transaction with one commit (acceptBatchSQL): at most acceptFlights
// batches are on their way at once, so a lone accept goes at once, and
// under load the batches grow with the load. PostgreSQL's own group
// commit then shares the WAL flushes of those few transactions.
//
// The chat's order is kept as one accept keeps it: the batch takes the
// line locks of its chats (shared, see LockChat; in the order of their
// keys) before any of its rows, and so their seqs, are made, and holds
// them until its commit, so a claim that reads the chat's line waits for
// it. Within the batch, rows take their seqs in arrival order.
//
// A batch that fails for what is in it (a text PostgreSQL refuses, say)
// is retried an accept at a time, so one bad message fails alone; a batch
// that fails because the database cannot be reached fails every accept in
// it with that storage error.

// acceptFlights is how many accept batches may be on their way to the
// server at once; acceptMax bounds a batch.
const (
	acceptFlights = 2
	acceptMax     = 256
)

// acceptOneSQL stores one accept: the CTE takes the chat's line lock
// (shared, as lineSQL; see LockChat) before the row, and with it the
// row's seq, is made.
const acceptOneSQL = `WITH line AS (SELECT pg_advisory_xact_lock_shared(hashtextextended($2, 7)))
	INSERT INTO messages (id, chat_id, text, state, created_at, updated_at, client_id)
	SELECT $1, $2, $3, 'pending', $4, $4, $5 FROM line
	ON CONFLICT DO NOTHING`

// acceptBatchSQL stores a batch and returns the ids it stored. The locks'
// aggregate yields its row only once every lock is held, and no row
// reaches the INSERT before it; the sort puts the rows, and so their
// seqs, in arrival order.
const acceptBatchSQL = `WITH line AS (SELECT count(pg_advisory_xact_lock_shared(k)) FROM
		(SELECT DISTINCT hashtextextended(c, 7) AS k FROM unnest($2::text[]) AS c ORDER BY k) AS ks)
	INSERT INTO messages (id, chat_id, text, state, created_at, updated_at, client_id)
	SELECT t.id, t.chat, t.text, 'pending', t.at, t.at, t.client
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
		WITH ORDINALITY AS t(id, chat, text, at, client, i), line
	ORDER BY t.i
	ON CONFLICT DO NOTHING
	RETURNING id`

// acceptReq is one accept waiting in the queue, and then its outcome.
type acceptReq struct {
	m    store.NewMessage
	done chan struct{}
	ok   bool
	err  error
}

// acceptQueue holds the accepts waiting for a batch.
type acceptQueue struct {
	mu      sync.Mutex
	waiting []*acceptReq
	flying  int // batches on their way (goroutines sending them)
}

// Accept stores m in a commit shared with the accepts waiting beside it
// (see above), durably; false: its id or its (chat, client id) is taken.
// ctx bounds the wait in the queue; once its batch is sent, the accept
// waits for the outcome regardless, so a committed message is never
// reported as failed.
func (s *DB) Accept(ctx context.Context, m store.NewMessage) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	r := &acceptReq{m: m, done: make(chan struct{})}
	q := &s.accepts
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	fly := q.flying < acceptFlights
	if fly {
		q.flying++
	}
	q.mu.Unlock()
	if fly {
		// This caller sends the batch it is in, then hands on.
		s.fly(ctx)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if q.withdraw(r) {
			return false, ctx.Err()
		}
		<-r.done
	}
	return r.ok, r.err
}

// withdraw takes r out of the queue; false: it was taken into a batch.
func (q *acceptQueue) withdraw(r *acceptReq) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiting {
		if w == r {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// take takes the next batch off the queue; nil: none waits, and the
// flight ends.
func (q *acceptQueue) take() []*acceptReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.waiting), acceptMax)
	if n == 0 {
		q.flying--
		return nil
	}
	b := make([]*acceptReq, n)
	copy(b, q.waiting)
	q.waiting = append(q.waiting[:0], q.waiting[n:]...)
	return b
}

// fly sends the batch of the waiting accepts; while more wait after it,
// a goroutine goes on sending them, so that the caller is answered with
// its own batch.
func (s *DB) fly(ctx context.Context) {
	b := s.accepts.take()
	if b == nil {
		return
	}
	s.sendAccepts(ctx, b)
	if next := s.accepts.take(); next != nil {
		go s.flyOn(context.WithoutCancel(ctx), next)
	}
}

// flyOn sends b and then every batch that waits, until none does.
func (s *DB) flyOn(ctx context.Context, b []*acceptReq) {
	for ; b != nil; b = s.accepts.take() {
		s.sendAccepts(ctx, b)
	}
}

// sendAccepts stores the batch b and tells each of its accepts the
// outcome.
func (s *DB) sendAccepts(ctx context.Context, b []*acceptReq) {
	defer func() {
		for _, r := range b {
			close(r.done)
		}
	}()
	conn, err := s.acquire(context.WithoutCancel(ctx))
	if err != nil {
		for _, r := range b {
			r.err = err
		}
		return
	}
	defer conn.Release()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if len(b) > 1 {
		n := len(b)
		ids, chats, texts, ats, clients := make([]string, n), make([]string, n), make([]string, n), make([]int64, n), make([]*string, n)
		for i, r := range b {
			ids[i], chats[i], texts[i], ats[i] = r.m.ID, r.m.ChatID, r.m.Text, r.m.At
			if r.m.ClientID != "" {
				clients[i] = &r.m.ClientID
			}
		}
		rows, err := conn.Query(wctx, acceptBatchSQL, ids, chats, texts, ats, clients)
		if err == nil {
			stored := make(map[string]bool, n)
			for rows.Next() {
				var id string
				if err = rows.Scan(&id); err != nil {
					break
				}
				stored[id] = true
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
			if err == nil {
				for _, r := range b {
					r.ok = stored[r.m.ID]
				}
				return
			}
		}
		if err = classify(err); store.IsStorage(err) {
			for _, r := range b {
				r.err = err
			}
			return
		}
		// Something in the batch was refused: each accept alone.
	}
	for _, r := range b {
		var client any // NULL: no client key
		if r.m.ClientID != "" {
			client = r.m.ClientID
		}
		tag, err := conn.Exec(wctx, acceptOneSQL, r.m.ID, r.m.ChatID, r.m.Text, r.m.At, client)
		r.ok, r.err = err == nil && tag.RowsAffected() == 1, classify(err)
	}
}
