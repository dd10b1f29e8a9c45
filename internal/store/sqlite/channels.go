package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/dispatchd/dispatch/internal/store"
)

// channelsSchema is the channels' migration: each channel's cursors (on
// the platform and in the event feed) and its deliveries, kept once done
// with the platform's message ids until purged. A chat's pending
// deliveries in seq order come from the primary key.
const channelsSchema = `
CREATE TABLE channel_cursors (
	channel    TEXT    PRIMARY KEY,
	inbound    INTEGER NOT NULL DEFAULT 0,
	feed       INTEGER NOT NULL DEFAULT 0,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE channel_deliveries (
	channel      TEXT    NOT NULL,
	seq          INTEGER NOT NULL,
	chat_id      TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	text         TEXT    NOT NULL,
	state        TEXT    NOT NULL DEFAULT 'pending',
	attempts     INTEGER NOT NULL DEFAULT 0,
	sent         INTEGER NOT NULL DEFAULT 0,
	platform_ids TEXT    NOT NULL DEFAULT '',
	next_at      INTEGER NOT NULL DEFAULT 0,
	error        TEXT    NOT NULL DEFAULT '',
	updated_at   INTEGER NOT NULL,
	PRIMARY KEY (channel, seq)
) WITHOUT ROWID;
CREATE INDEX channel_deliveries_state ON channel_deliveries (state, updated_at);
`

func (t *Tx) SetChannelInbound(ctx context.Context, channel string, next, now int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO channel_cursors (channel, inbound, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (channel) DO UPDATE SET inbound = max(inbound, ?2), updated_at = ?3`, channel, next, now)
	return err
}

func (t *Tx) SetChannelFeed(ctx context.Context, channel string, seq, now int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO channel_cursors (channel, feed, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (channel) DO UPDATE SET feed = max(feed, ?2), updated_at = ?3`, channel, seq, now)
	return err
}

func (t *Tx) InsertDelivery(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.ExecContext(ctx, `INSERT INTO channel_deliveries (channel, seq, chat_id, kind, text, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, d.Channel, d.Seq, d.ChatID, string(d.Kind), d.Text, now)
	return err
}

func (t *Tx) DeliverySent(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE channel_deliveries
		SET state = ?, sent = ?, platform_ids = ?, attempts = 0, next_at = 0, error = '', updated_at = ?
		WHERE channel = ? AND seq = ? AND state = 'pending' AND sent <= ?`,
		d.State, d.Sent, store.JoinPlatformIDs(d.PlatformIDs), now, d.Channel, d.Seq, d.Sent)
	return err
}

func (t *Tx) DeliveryAttempt(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE channel_deliveries
		SET attempts = ?, next_at = ?, error = ?, updated_at = ?
		WHERE channel = ? AND seq = ? AND state = 'pending'`,
		d.Attempts, store.Nanos(d.NextAt), d.Error, now, d.Channel, d.Seq)
	return err
}

func (t *Tx) DeliveryGiveUp(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.ExecContext(ctx, `UPDATE channel_deliveries
		SET state = 'failed', attempts = ?, next_at = 0, error = ?, updated_at = ?
		WHERE channel = ? AND seq = ? AND state = 'pending'`,
		d.Attempts, d.Error, now, d.Channel, d.Seq)
	return err
}

func (t *Tx) DeleteDelivered(ctx context.Context, before int64, n int) (int64, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM channel_deliveries WHERE (channel, seq) IN (
		SELECT channel, seq FROM channel_deliveries WHERE state = 'done' AND updated_at < ? LIMIT ?)`, before, n)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *DB) ChannelCursor(ctx context.Context, channel string) (store.ChannelCursor, bool, error) {
	c, err := store.ScanChannelCursor(s.r.QueryRowContext(ctx, `SELECT inbound, feed, updated_at FROM channel_cursors WHERE channel = ?`, channel))
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChannelCursor{}, false, nil
	}
	return c, err == nil, err
}

func (s *DB) PendingDeliveries(ctx context.Context, channel string, limit int) ([]store.ChannelDelivery, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.DeliveryColumns+` FROM channel_deliveries
		WHERE channel = ? AND state = 'pending' ORDER BY seq LIMIT ?`, channel, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanDelivery)
}

func (s *DB) Deliveries(ctx context.Context, channel, chat string, limit int) ([]store.ChannelDelivery, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+store.DeliveryColumns+` FROM channel_deliveries
		WHERE channel = ?1 AND (?2 = '' OR chat_id = ?2) ORDER BY seq LIMIT ?3`, channel, chat, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanDelivery)
}

func (s *DB) DeliveryCounts(ctx context.Context) ([]store.ChannelCount, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT channel, state, count(*), max(next_at) FROM channel_deliveries GROUP BY channel, state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return store.ScanAll(rows, store.ScanChannelCount)
}
