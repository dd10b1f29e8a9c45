package pgstore

import (
	"context"
	"fmt"

	"github.com/dispatchd/dispatch/internal/store"
)

// ConversationFiles returns what the database holds of chat's
// conversation files (no content).
func (s *Store) ConversationFiles(ctx context.Context, chat string) ([]store.ConvFile, error) {
	rows, err := s.pool.Query(ctx, `SELECT path, size, hash FROM conversation_files
		WHERE chat_id = $1 ORDER BY path`, chat)
	if err != nil {
		return nil, fmt.Errorf("store: conversation files: %w", classify(err))
	}
	defer rows.Close()
	var out []store.ConvFile
	for rows.Next() {
		var f store.ConvFile
		if err := rows.Scan(&f.Path, &f.Size, &f.Hash); err != nil {
			return nil, fmt.Errorf("store: conversation files: %w", err)
		}
		out = append(out, f)
	}
	return out, classify(rows.Err())
}

// SaveConversation applies one save of chat's conversation files, in one
// commit, fenced like every write for the chat (only its owner saves).
func (s *Store) SaveConversation(ctx context.Context, chat string, changes []store.ConvChange) error {
	if len(changes) == 0 {
		return nil
	}
	err := s.write(ctx, false, func(ctx context.Context, tx *wtx) error {
		if err := s.fenceChats(ctx, tx, chat); err != nil {
			return err
		}
		for _, c := range changes {
			if c.Replace {
				if _, err := tx.Exec(ctx, `DELETE FROM conversation_chunks WHERE chat_id = $1 AND path = $2`, chat, c.Path); err != nil {
					return err
				}
			}
			if len(c.Data) > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO conversation_chunks (chat_id, path, off, data) VALUES ($1, $2, $3, $4)
					ON CONFLICT (chat_id, path, off) DO UPDATE SET data = excluded.data`, chat, c.Path, c.Offset, c.Data); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO conversation_files (chat_id, path, size, hash) VALUES ($1, $2, $3, $4)
				ON CONFLICT (chat_id, path) DO UPDATE SET size = excluded.size, hash = excluded.hash`, chat, c.Path, c.Size, c.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save conversation of %q: %w", chat, err)
	}
	return nil
}

// LoadConversation returns chat's saved conversation files: path →
// content.
func (s *Store) LoadConversation(ctx context.Context, chat string) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.path, c.data FROM conversation_chunks c
		JOIN conversation_files f ON f.chat_id = c.chat_id AND f.path = c.path
		WHERE c.chat_id = $1 AND c.off < f.size ORDER BY c.path, c.off`, chat)
	if err != nil {
		return nil, fmt.Errorf("store: load conversation: %w", classify(err))
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var (
			p string
			d []byte
		)
		if err := rows.Scan(&p, &d); err != nil {
			return nil, fmt.Errorf("store: load conversation: %w", err)
		}
		out[p] = append(out[p], d...)
	}
	return out, classify(rows.Err())
}
