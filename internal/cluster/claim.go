package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrNodeIDInUse means another running process has this node's id.
var ErrNodeIDInUse = errors.New("node.id is in use by another running dispatch process")

// Claim makes this process the only one running under its node.id, for as
// long as it runs: a session-level advisory lock on the id, held on a
// connection of its own until Stop. PostgreSQL releases it the moment that
// connection ends — a clean exit, or the process killed (kill -9, a crash:
// the kernel closes its connection) — so a restarted node claims the id at
// once, while a second process given the same id is refused at once
// (ErrNodeIDInUse), before it serves or takes anything: two live processes
// with one id would take chats from each other. A process stopped dead
// (SIGSTOP) still holds its connection and so the id.
func (m *Manager) Claim(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, m.listen.Copy())
	if err != nil {
		return fmt.Errorf("cluster: claim node.id %q: %w", m.cfg.Node, err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, claimKey(m.cfg.Node)).Scan(&got); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("cluster: claim node.id %q: %w", m.cfg.Node, err)
	}
	if !got {
		conn.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("%w: %q (give every node its own node.id, or stop the other process first)", ErrNodeIDInUse, m.cfg.Node)
	}
	m.claim = conn
	return nil
}

// claimKey is the text the node id's advisory lock is derived from.
func claimKey(node string) string { return "dispatch node.id " + node }

// Unclaim gives the node id back (Stop does); idempotent.
func (m *Manager) Unclaim(ctx context.Context) {
	if m.claim != nil {
		m.claim.Close(ctx)
		m.claim = nil
	}
}
