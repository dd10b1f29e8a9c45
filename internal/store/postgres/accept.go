package postgres

import (
	"context"

	"github.com/dispatchd/dispatch/internal/store"
)

// acceptSQL stores one accept: the CTE takes the chat's line lock (shared,
// as lineSQL; see LockChat) before the row, and with it the row's seq, is
// made, and holds it until the statement's commit, so a claim that reads
// the chat's line waits for it, while other accepts of the chat do not.
const acceptSQL = `WITH line AS (SELECT pg_advisory_xact_lock_shared(hashtextextended($2, 7)))
	INSERT INTO messages (id, chat_id, text, state, created_at, updated_at, client_id)
	SELECT $1, $2, $3, 'pending', $4, $4, $5 FROM line
	ON CONFLICT DO NOTHING`

// Accept stores m in one statement, its own transaction (one round trip
// and one commit, whose WAL flush PostgreSQL shares with the commits
// under way beside it). Accepts grouped into one statement and commit
// were measured and left: on a loaded machine they made turns smaller and
// the server's CPU per message larger (docs/performance.md).
func (s *DB) Accept(ctx context.Context, m store.NewMessage) (bool, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	// As in Write: once sent, the statement runs to its end regardless of
	// the caller, so a committed message is never reported as failed.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	var client any // NULL: no client key
	if m.ClientID != "" {
		client = m.ClientID
	}
	tag, err := conn.Exec(wctx, acceptSQL, m.ID, m.ChatID, m.Text, m.At, client)
	if err != nil {
		return false, classify(err)
	}
	return tag.RowsAffected() == 1, nil
}
