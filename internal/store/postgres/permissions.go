package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
)

// Permission requests, rules and progress in PostgreSQL's SQL.

func (t *Tx) InsertPermission(ctx context.Context, r permission.Request) error {
	_, err := t.Exec(ctx, `INSERT INTO permission_requests
		(id, chat_id, agent_id, tool_use_id, tool, summary, input, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.ID, r.ChatID, r.AgentID, r.ToolUseID, r.Tool, r.Summary, string(r.Input),
		store.Nanos(r.CreatedAt), store.Nanos(r.ExpiresAt))
	return err
}

// PermissionForUpdate locks the request's row, so of two answers at once
// (on any nodes) the second sees the first's decision.
func (t *Tx) PermissionForUpdate(ctx context.Context, id string) (permission.Request, error) {
	r, err := store.ScanPermission(t.QueryRow(ctx, `SELECT `+store.PermissionColumns+` FROM permission_requests WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (t *Tx) ClosePermission(ctx context.Context, r permission.Request) error {
	_, err := t.Exec(ctx, `UPDATE permission_requests
		SET decision = $1, decided_by = $2, decided_at = $3, reason = $4
		WHERE id = $5 AND decision = ''`,
		string(r.Decision), r.DecidedBy, store.Nanos(r.DecidedAt), r.Reason, r.ID)
	return err
}

func (t *Tx) UpsertPermissionRule(ctx context.Context, rl permission.Rule) error {
	_, err := t.Exec(ctx, `INSERT INTO permission_rules (chat_id, tool, created_at, created_by)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (chat_id, tool) DO UPDATE SET created_at = excluded.created_at, created_by = excluded.created_by`,
		rl.ChatID, rl.Tool, store.Nanos(rl.CreatedAt), rl.CreatedBy)
	return err
}

func (t *Tx) DeletePermissionRule(ctx context.Context, chat, tool string) (bool, error) {
	tag, err := t.Exec(ctx, `DELETE FROM permission_rules WHERE chat_id = $1 AND tool = $2`, chat, tool)
	return tag.RowsAffected() > 0, err
}

func (t *Tx) DeleteProgress(ctx context.Context, chat string) (int64, error) {
	if _, err := t.Exec(ctx, `DELETE FROM webhook_outbox WHERE seq IN (
		SELECT seq FROM events WHERE type = 'progress' AND ($1 = '' OR chat_id = $1))`, chat); err != nil {
		return 0, err
	}
	tag, err := t.Exec(ctx, `DELETE FROM events WHERE type = 'progress' AND ($1 = '' OR chat_id = $1)`, chat)
	return tag.RowsAffected(), err
}

func (s *DB) Permission(ctx context.Context, id string) (permission.Request, error) {
	r, err := store.ScanPermission(s.pool.QueryRow(ctx, `SELECT `+store.PermissionColumns+` FROM permission_requests WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, classify(err)
}

func (s *DB) OpenPermissions(ctx context.Context, chat string) ([]permission.Request, error) {
	return query(ctx, s, store.ScanPermission, `SELECT `+store.PermissionColumns+` FROM permission_requests
		WHERE decision = '' AND ($1 = '' OR chat_id = $1) ORDER BY created_at, id`, chat)
}

func (s *DB) PermissionRules(ctx context.Context, chat string) ([]permission.Rule, error) {
	return query(ctx, s, store.ScanRule, `SELECT `+store.RuleColumns+` FROM permission_rules
		WHERE $1 = '' OR chat_id = $1 ORDER BY chat_id, tool`, chat)
}
