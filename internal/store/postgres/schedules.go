package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/store"
)

// schedulesSchema is the schedules' migration (the same table as
// SQLite's).
const schedulesSchema = `
CREATE TABLE schedules (
	id         text    PRIMARY KEY,
	chat_id    text    NOT NULL,
	kind       text    NOT NULL,
	expr       text    NOT NULL,
	tz         text    NOT NULL DEFAULT '',
	created_at bigint  NOT NULL,
	text       text    NOT NULL,
	catch_up   text    NOT NULL,
	paused     boolean NOT NULL DEFAULT false,
	through    bigint  NOT NULL DEFAULT 0,
	last_fired bigint  NOT NULL DEFAULT 0,
	finished   boolean NOT NULL DEFAULT false,
	updated_at bigint  NOT NULL
);
CREATE INDEX schedules_chat ON schedules (chat_id, created_at);
`

func (t *Tx) InsertSchedule(ctx context.Context, r store.ScheduleRecord, now int64) (bool, error) {
	tag, err := t.Exec(ctx, `INSERT INTO schedules (`+store.ScheduleColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`, store.ScheduleArgs(r, now)...)
	return tag.RowsAffected() > 0, err
}

// ScheduleForUpdate locks the schedule's row, so of two nodes firing it at
// once the second sees the first's progress.
func (t *Tx) ScheduleForUpdate(ctx context.Context, id string) (store.ScheduleRecord, error) {
	r, err := store.ScanSchedule(t.QueryRow(ctx, `SELECT `+store.ScheduleColumns+` FROM schedules WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

func (t *Tx) UpdateSchedule(ctx context.Context, r store.ScheduleRecord, now int64) error {
	_, err := t.Exec(ctx, `UPDATE schedules SET paused = $1, through = $2, last_fired = $3, finished = $4, updated_at = $5
		WHERE id = $6`, r.Paused, store.Nanos(r.Through), store.Nanos(r.LastFired), r.Finished, now, r.ID)
	return err
}

func (t *Tx) DeleteSchedule(ctx context.Context, id string) (bool, error) {
	tag, err := t.Exec(ctx, `DELETE FROM schedules WHERE id = $1`, id)
	return tag.RowsAffected() > 0, err
}

func (s *DB) ScheduleByID(ctx context.Context, id string) (store.ScheduleRecord, error) {
	r, err := store.ScanSchedule(s.pool.QueryRow(ctx, `SELECT `+store.ScheduleColumns+` FROM schedules WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, classify(err)
}

func (s *DB) ScheduleList(ctx context.Context, chat string) ([]store.ScheduleRecord, error) {
	return query(ctx, s, store.ScanSchedule, `SELECT `+store.ScheduleColumns+` FROM schedules
		WHERE $1 = '' OR chat_id = $1 ORDER BY created_at, id`, chat)
}
