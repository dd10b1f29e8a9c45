package store

import (
	"context"
	"fmt"
	"strings"
)

// MaxPage is the most messages one page of a listing holds.
const MaxPage = 1000

// Listed is a message as a listing shows it: its texts clipped (Text,
// Reply and Error hold at most the clip length in characters) and their
// full sizes in bytes, so that a page costs memory in proportion to its
// rows, not to the texts behind them.
type Listed struct {
	Message
	TextBytes, ReplyBytes, ErrorBytes int
}

// Clipped reports whether any of the texts was cut.
func (l Listed) Clipped() bool {
	return len(l.Text) < l.TextBytes || len(l.Reply) < l.ReplyBytes || len(l.Error) < l.ErrorBytes
}

// ListPage returns up to limit (at most MaxPage) messages matching f with
// Seq greater than after, in Seq order, their texts clipped to clip
// characters in the query itself. more reports whether later messages
// match: the next page starts after the last one returned.
func (s *Store) ListPage(ctx context.Context, f Filter, after int64, limit, clip int) (page []Listed, more bool, err error) {
	where := []string{"seq > ?"}
	args := []any{clip, clip, clip, after}
	if f.ChatID != "" {
		where = append(where, "chat_id = ?")
		args = append(args, f.ChatID)
	}
	switch {
	case f.State == "":
		where = append(where, "state IN ('pending', 'inflight', 'dead')")
	case f.State.valid():
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	default:
		return nil, false, fmt.Errorf("store: list page: unknown state %q", f.State)
	}
	limit = min(max(limit, 1), MaxPage)
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT seq, id, chat_id,
			substr(text, 1, ?), length(CAST(text AS BLOB)),
			substr(reply, 1, ?), length(CAST(reply AS BLOB)),
			substr(error, 1, ?), length(CAST(error AS BLOB)),
			state, attempts, failures, created_at, updated_at, kept_in, coalesce(client_id, ''), turn_id
		FROM messages WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l                Listed
			created, updated int64
		)
		if err := rows.Scan(&l.Seq, &l.ID, &l.ChatID, &l.Text, &l.TextBytes, &l.Reply, &l.ReplyBytes,
			&l.Error, &l.ErrorBytes, &l.State, &l.Attempts, &l.Failures, &created, &updated, &l.KeptIn, &l.ClientID, &l.TurnID); err != nil {
			return nil, false, fmt.Errorf("store: list page: %w", err)
		}
		l.CreatedAt, l.UpdatedAt = fromNanos(created), fromNanos(updated)
		page = append(page, l)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: list page: %w", err)
	}
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}
