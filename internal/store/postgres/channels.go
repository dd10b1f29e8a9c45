package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/dispatchd/dispatch/internal/store"
)

// channelsSchema is the channels' migration (the same tables as
// SQLite's): each channel's cursors and its deliveries.
const channelsSchema = `
CREATE TABLE channel_cursors (
	channel    text   PRIMARY KEY,
	inbound    bigint NOT NULL DEFAULT 0,
	feed       bigint NOT NULL DEFAULT 0,
	updated_at bigint NOT NULL
);
CREATE TABLE channel_deliveries (
	channel      text    NOT NULL,
	seq          bigint  NOT NULL,
	chat_id      text    NOT NULL,
	kind         text    NOT NULL,
	text         text    NOT NULL,
	state        text    NOT NULL DEFAULT 'pending',
	attempts     integer NOT NULL DEFAULT 0,
	sent         integer NOT NULL DEFAULT 0,
	platform_ids text    NOT NULL DEFAULT '',
	next_at      bigint  NOT NULL DEFAULT 0,
	error        text    NOT NULL DEFAULT '',
	updated_at   bigint  NOT NULL,
	PRIMARY KEY (channel, seq)
);
CREATE INDEX channel_deliveries_state ON channel_deliveries (state, updated_at);
`

func (t *Tx) SetChannelInbound(ctx context.Context, channel string, next, now int64) error {
	_, err := t.Exec(ctx, `INSERT INTO channel_cursors (channel, inbound, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (channel) DO UPDATE SET inbound = greatest(channel_cursors.inbound, excluded.inbound), updated_at = excluded.updated_at`,
		channel, next, now)
	return err
}

func (t *Tx) SetChannelFeed(ctx context.Context, channel string, seq, now int64) error {
	_, err := t.Exec(ctx, `INSERT INTO channel_cursors (channel, feed, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (channel) DO UPDATE SET feed = greatest(channel_cursors.feed, excluded.feed), updated_at = excluded.updated_at`,
		channel, seq, now)
	return err
}

func (t *Tx) InsertDelivery(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.Exec(ctx, `INSERT INTO channel_deliveries (channel, seq, chat_id, kind, text, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, d.Channel, d.Seq, d.ChatID, string(d.Kind), d.Text, now)
	return err
}

func (t *Tx) DeliverySent(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.Exec(ctx, `UPDATE channel_deliveries
		SET state = $1, sent = $2, platform_ids = $3, attempts = 0, next_at = 0, error = '', updated_at = $4
		WHERE channel = $5 AND seq = $6 AND state = 'pending' AND sent <= $2`,
		d.State, d.Sent, store.JoinPlatformIDs(d.PlatformIDs), now, d.Channel, d.Seq)
	return err
}

func (t *Tx) DeliveryAttempt(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.Exec(ctx, `UPDATE channel_deliveries
		SET attempts = $1, next_at = $2, error = $3, updated_at = $4
		WHERE channel = $5 AND seq = $6 AND state = 'pending'`,
		d.Attempts, store.Nanos(d.NextAt), d.Error, now, d.Channel, d.Seq)
	return err
}

func (t *Tx) DeliveryGiveUp(ctx context.Context, d store.ChannelDelivery, now int64) error {
	_, err := t.Exec(ctx, `UPDATE channel_deliveries
		SET state = 'failed', attempts = $1, next_at = 0, error = $2, updated_at = $3
		WHERE channel = $4 AND seq = $5 AND state = 'pending'`,
		d.Attempts, d.Error, now, d.Channel, d.Seq)
	return err
}

func (t *Tx) DeleteDelivered(ctx context.Context, before int64, n int) (int64, error) {
	tag, err := t.Exec(ctx, `DELETE FROM channel_deliveries WHERE (channel, seq) IN (
		SELECT channel, seq FROM channel_deliveries WHERE state = 'done' AND updated_at < $1 LIMIT $2)`, before, n)
	return tag.RowsAffected(), err
}

func (s *DB) ChannelCursor(ctx context.Context, channel string) (store.ChannelCursor, bool, error) {
	c, err := store.ScanChannelCursor(s.pool.QueryRow(ctx, `SELECT inbound, feed, updated_at FROM channel_cursors WHERE channel = $1`, channel))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ChannelCursor{}, false, nil
	}
	return c, err == nil, classify(err)
}

func (s *DB) PendingDeliveries(ctx context.Context, channel string, limit int) ([]store.ChannelDelivery, error) {
	return query(ctx, s, store.ScanDelivery, `SELECT `+store.DeliveryColumns+` FROM channel_deliveries
		WHERE channel = $1 AND state = 'pending' ORDER BY seq LIMIT $2`, channel, limit)
}

func (s *DB) Deliveries(ctx context.Context, channel, chat string, limit int) ([]store.ChannelDelivery, error) {
	return query(ctx, s, store.ScanDelivery, `SELECT `+store.DeliveryColumns+` FROM channel_deliveries
		WHERE channel = $1 AND ($2 = '' OR chat_id = $2) ORDER BY seq LIMIT $3`, channel, chat, limit)
}

func (s *DB) DeliveryCounts(ctx context.Context) ([]store.ChannelCount, error) {
	return query(ctx, s, store.ScanChannelCount, `SELECT channel, state, count(*)::integer, max(next_at) FROM channel_deliveries GROUP BY channel, state`)
}
