package store

import (
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// The shapes of rows every dialect reads, with their scanners, so that a
// dialect's query names the columns and the conversion is written once.

// Nanos stores a time as unix nanoseconds (the zero time is 0), the form
// every dialect keeps times in.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos is the inverse of Nanos. Times come back in UTC, so values
// read back compare equal with ==, whatever the process's time zone.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Scanner is a row being read (database/sql's and pgx's alike).
type Scanner interface{ Scan(dest ...any) error }

// Rows is a result being read.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// MessageColumns are the columns ScanMessage reads, in its order.
const MessageColumns = `seq, id, chat_id, text, state, attempts, failures, error, reply, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id`

// ScanMessage reads a row of MessageColumns.
func ScanMessage(row Scanner) (Message, error) {
	var (
		m                Message
		created, updated int64
	)
	err := row.Scan(&m.Seq, &m.ID, &m.ChatID, &m.Text, &m.State, &m.Attempts,
		&m.Failures, &m.Error, &m.Reply, &created, &updated, &m.KeptIn, &m.ClientID, &m.TurnID)
	m.CreatedAt, m.UpdatedAt = FromNanos(created), FromNanos(updated)
	return m, err
}

// ScanListed reads a listing's row: seq, id, chat_id, the clipped text
// and its size in bytes, the same for reply and error, then state,
// attempts, failures, created_at, updated_at, kept_in, client_id (”
// for none) and turn_id.
func ScanListed(row Scanner) (Listed, error) {
	var (
		l                Listed
		st               string
		created, updated int64
	)
	err := row.Scan(&l.Seq, &l.ID, &l.ChatID, &l.Text, &l.TextBytes, &l.Reply, &l.ReplyBytes,
		&l.Error, &l.ErrorBytes, &st, &l.Attempts, &l.Failures, &created, &updated, &l.KeptIn, &l.ClientID, &l.TurnID)
	l.State = State(st)
	l.CreatedAt, l.UpdatedAt = FromNanos(created), FromNanos(updated)
	return l, err
}

// SessionColumns are the columns ScanSession reads, in its order.
const SessionColumns = `chat_id, session_id, exempt, live, failed, fail_reason, turns, restarts, created_at, last_activity, paused`

// ScanSession reads a row of SessionColumns.
func ScanSession(row Scanner) (SessionRecord, error) {
	var (
		r                 SessionRecord
		created, activity int64
	)
	err := row.Scan(&r.ChatID, &r.SessionID, &r.Exempt, &r.Live, &r.Failed,
		&r.FailReason, &r.Turns, &r.Restarts, &created, &activity, &r.Paused)
	r.CreatedAt, r.LastActivity = FromNanos(created), FromNanos(activity)
	return r, err
}

// EventColumns are the columns ScanEvent reads, in its order.
const EventColumns = `seq, type, at, payload`

// ScanEvent reads a row of EventColumns.
func ScanEvent(row Scanner) (events.Event, error) {
	var (
		seq, at      int64
		typ, payload string
	)
	if err := row.Scan(&seq, &typ, &at, &payload); err != nil {
		return events.Event{}, err
	}
	return events.FromPayload(seq, events.Type(typ), FromNanos(at), []byte(payload))
}

// OutboxColumns are the columns ScanOutbox reads, in its order.
const OutboxColumns = `endpoint, seq, chat_id, event_at, state, attempts, first_at, next_at, error, updated_at`

// ScanOutbox reads a row of OutboxColumns.
func ScanOutbox(row Scanner) (OutboxRow, error) {
	var (
		r                          OutboxRow
		evAt, first, next, updated int64
	)
	err := row.Scan(&r.Endpoint, &r.Seq, &r.ChatID, &evAt, &r.State, &r.Attempts, &first, &next, &r.Error, &updated)
	r.EventAt, r.FirstAt, r.NextAt, r.Updated = FromNanos(evAt), FromNanos(first), FromNanos(next), FromNanos(updated)
	return r, err
}

// ScanAll reads every row with scan (the caller closes rows).
func ScanAll[R any](rows Rows, scan func(Scanner) (R, error)) ([]R, error) {
	var out []R
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScanString reads a one-column row of text.
func ScanString(row Scanner) (s string, err error) {
	err = row.Scan(&s)
	return s, err
}

// ScanFailed reads seq, id, chat_id, state.
func ScanFailed(row Scanner) (Failed, error) {
	var (
		f  Failed
		st string
	)
	err := row.Scan(&f.Seq, &f.ID, &f.ChatID, &st)
	f.State = State(st)
	return f, err
}

// ScanAnswered reads seq, id, chat_id.
func ScanAnswered(row Scanner) (a Answered, err error) {
	err = row.Scan(&a.Seq, &a.ID, &a.ChatID)
	return a, err
}

// ScanTurn reads turn_id, text, reply.
func ScanTurn(row Scanner) (t TurnMessage, err error) {
	err = row.Scan(&t.TurnID, &t.Text, &t.Reply)
	return t, err
}

// ScanOutboxCount reads endpoint, state, count.
func ScanOutboxCount(row Scanner) (c OutboxCount, err error) {
	err = row.Scan(&c.Endpoint, &c.State, &c.N)
	return c, err
}

// ScanConvFile reads path, size, hash.
func ScanConvFile(row Scanner) (f ConvFile, err error) {
	err = row.Scan(&f.Path, &f.Size, &f.Hash)
	return f, err
}

// ScanConvChunk reads path, data.
func ScanConvChunk(row Scanner) (c ConvChunk, err error) {
	err = row.Scan(&c.Path, &c.Data)
	return c, err
}
