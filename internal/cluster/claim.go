package cluster

import (
	"context"
	"errors"
	"fmt"
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
	release, ok, err := m.pg.ClaimNode(ctx, m.cfg.Node)
	if err != nil {
		return fmt.Errorf("cluster: claim node.id %q: %w", m.cfg.Node, err)
	}
	if !ok {
		return fmt.Errorf("%w: %q (give every node its own node.id, or stop the other process first)", ErrNodeIDInUse, m.cfg.Node)
	}
	m.mu.Lock()
	m.claim = release
	m.mu.Unlock()
	return nil
}

// Unclaim gives the node id back (Stop does); idempotent.
func (m *Manager) Unclaim(ctx context.Context) {
	m.mu.Lock()
	release := m.claim
	m.claim = nil
	m.mu.Unlock()
	if release != nil {
		release(ctx)
	}
}
