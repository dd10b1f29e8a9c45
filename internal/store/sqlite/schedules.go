package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/dispatchd/dispatch/internal/store"
)

// schedulesSchema is the schedules' migration: each schedule's spec (kind,
// expression, zone, creation time), its text and catch-up policy, and its
// progress (through: the latest scheduled time dealt with; last_fired;
// finished). A chat's schedules come from (chat_id, created_at).
const schedulesSchema = `
CREATE TABLE schedules (
	id         TEXT    PRIMARY KEY,
	chat_id    TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	expr       TEXT    NOT NULL,
	tz         TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	text       TEXT    NOT NULL,
	catch_up   TEXT    NOT NULL,
	paused     INTEGER NOT NULL DEFAULT 0,
	through    INTEGER NOT NULL DEFAULT 0,
	last_fired INTEGER NOT NULL DEFAULT 0,
	finished   INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_chat ON schedules (chat_id, created_at);
`

func (t *Tx) InsertSchedule(ctx context.Context, r store.ScheduleRecord, now int64) (bool, error) {
	res, err := t.ExecContext(ctx, `INSERT INTO schedules (`+store.ScheduleColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, store.ScheduleArgs(r, now)...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ScheduleForUpdate: the single writer already holds every row.
func (t *Tx) ScheduleForUpdate(ctx context.Context, id string) (store.ScheduleRecord, error) {
	r, err := store.ScanSchedule(t.QueryRowContext(ctx, `SELECT `+store.ScheduleColumns+` FROM schedules WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (t *Tx) UpdateSchedule(ctx context.Context, r store.ScheduleRecord, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE schedules SET paused = ?, through = ?, last_fired = ?, finished = ?, updated_at = ?
		WHERE id = ?`, r.Paused, store.Nanos(r.Through), store.Nanos(r.LastFired), r.Finished, now, r.ID)
	return err
}

func (t *Tx) DeleteSchedule(ctx context.Context, id string) (bool, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM schedules WHERE id = ?`, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (s *DB) ScheduleByID(ctx context.Context, id string) (store.ScheduleRecord, error) {
	r, err := store.ScanSchedule(s.rdb.QueryRowContext(ctx, `SELECT `+store.ScheduleColumns+` FROM schedules WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (s *DB) ScheduleList(ctx context.Context, chat string) ([]store.ScheduleRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+store.ScheduleColumns+` FROM schedules
		WHERE ?1 = '' OR chat_id = ?1 ORDER BY created_at, id`, chat)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanSchedule)
}
