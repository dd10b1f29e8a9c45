package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
)

// Permission requests, rules and progress in SQLite's SQL.

func (t *Tx) InsertPermission(ctx context.Context, r permission.Request) error {
	_, err := t.ExecContext(ctx, `INSERT INTO permission_requests
		(id, chat_id, agent_id, tool_use_id, tool, summary, input, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.ChatID, r.AgentID, r.ToolUseID, r.Tool, r.Summary, string(r.Input),
		store.Nanos(r.CreatedAt), store.Nanos(r.ExpiresAt))
	return err
}

// PermissionForUpdate: the single writer already holds every row.
func (t *Tx) PermissionForUpdate(ctx context.Context, id string) (permission.Request, error) {
	r, err := store.ScanPermission(t.QueryRowContext(ctx, `SELECT `+store.PermissionColumns+` FROM permission_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (t *Tx) ClosePermission(ctx context.Context, r permission.Request) error {
	_, err := t.ExecContext(ctx, `UPDATE permission_requests
		SET decision = ?, decided_by = ?, decided_at = ?, reason = ?
		WHERE id = ? AND decision = ''`,
		string(r.Decision), r.DecidedBy, store.Nanos(r.DecidedAt), r.Reason, r.ID)
	return err
}

func (t *Tx) UpsertPermissionRule(ctx context.Context, rl permission.Rule) error {
	_, err := t.ExecContext(ctx, `INSERT INTO permission_rules (chat_id, tool, created_at, created_by)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (chat_id, tool) DO UPDATE SET created_at = excluded.created_at, created_by = excluded.created_by`,
		rl.ChatID, rl.Tool, store.Nanos(rl.CreatedAt), rl.CreatedBy)
	return err
}

func (t *Tx) DeletePermissionRule(ctx context.Context, chat, tool string) (bool, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM permission_rules WHERE chat_id = ? AND tool = ?`, chat, tool)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *Tx) DeleteProgress(ctx context.Context, chat string) (int64, error) {
	if _, err := t.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE seq IN (
		SELECT seq FROM events WHERE type = 'progress' AND (?1 = '' OR chat_id = ?1))`, chat); err != nil {
		return 0, err
	}
	res, err := t.ExecContext(ctx, `DELETE FROM events WHERE type = 'progress' AND (?1 = '' OR chat_id = ?1)`, chat)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *DB) Permission(ctx context.Context, id string) (permission.Request, error) {
	r, err := store.ScanPermission(s.rdb.QueryRowContext(ctx, `SELECT `+store.PermissionColumns+` FROM permission_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (s *DB) OpenPermissions(ctx context.Context, chat string) ([]permission.Request, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+store.PermissionColumns+` FROM permission_requests
		WHERE decision = '' AND (?1 = '' OR chat_id = ?1) ORDER BY created_at, id`, chat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanPermission)
}

func (s *DB) PermissionRules(ctx context.Context, chat string) ([]permission.Rule, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+store.RuleColumns+` FROM permission_rules
		WHERE ?1 = '' OR chat_id = ?1 ORDER BY chat_id, tool`, chat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanRule)
}
