package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// The cluster's queries: leases, roles, node heartbeats and wake-ups
// (internal/cluster holds their policy). Every expiry is the database's
// clock (clock_timestamp()), so the nodes' clocks never have to agree.

// WakeChannel is the NOTIFY channel on which a committed accept (or retry)
// names its chat, so that the chat's owner node wakes its session without
// polling.
const WakeChannel = "dispatch_wake"

// HoldLease reports whether chat's lease names node with token and has not
// expired, and holds the lease row (FOR SHARE) until the transaction ends:
// a takeover bumps the token with an UPDATE of that row, so it waits for
// this transaction to commit.
func (t *Tx) HoldLease(ctx context.Context, chat, node string, token int64) (bool, error) {
	var got int64
	err := t.QueryRow(ctx, `SELECT token FROM leases
		WHERE chat_id = $1 AND owner = $2 AND expires_at > clock_timestamp()
		FOR SHARE`, chat, node).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil && got == token, err
}

// NotifyWake sends chat on WakeChannel, in a transaction of its own that
// is not waited for (synchronous_commit off). A NOTIFY inside the accept's
// own transaction would serialize every accept's commit (PostgreSQL holds
// one lock on its notification queue from a notifying transaction's
// pre-commit to its end, WAL flush included), losing group commit.
func (s *DB) NotifyWake(ctx context.Context, chat string) error {
	return s.Write(ctx, true, func(ctx context.Context, tx *Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, WakeChannel, chat)
		return err
	})
}
