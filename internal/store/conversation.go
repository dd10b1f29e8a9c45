package store

import (
	"context"
	"fmt"
)

// ConvFile is one file of an agent's saved conversation (the claude
// agent's transcript and the files beside it), as the database has it:
// its path relative to the chat's conversation folder, its size and the
// SHA-256 of its content.
type ConvFile struct {
	Path string
	Size int64
	Hash []byte
}

// ConvChange is what one save changes in one file: Data is written at
// Offset (an append to the saved content), or, with Replace, is the
// file's whole new content. Size and Hash describe the file after it.
type ConvChange struct {
	Path    string
	Offset  int64
	Data    []byte
	Replace bool
	Size    int64
	Hash    []byte
}

// ConversationFiles returns what the database holds of chat's
// conversation files (no content).
func (s *Store[T]) ConversationFiles(ctx context.Context, chat string) ([]ConvFile, error) {
	out, err := s.d.ConversationFiles(ctx, chat)
	if err != nil {
		return nil, fmt.Errorf("store: conversation files: %w", err)
	}
	return out, nil
}

// SaveConversation applies one save of chat's conversation files, in one
// commit, fenced like every write for the chat (only its owner saves).
func (s *Store[T]) SaveConversation(ctx context.Context, chat string, changes []ConvChange) error {
	if len(changes) == 0 {
		return nil
	}
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fenced(ctx, tx, chat); err != nil {
			return err
		}
		for _, c := range changes {
			if err := tx.SaveConversationFile(ctx, chat, c); err != nil {
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
func (s *Store[T]) LoadConversation(ctx context.Context, chat string) (map[string][]byte, error) {
	chunks, err := s.d.ConversationChunks(ctx, chat)
	if err != nil {
		return nil, fmt.Errorf("store: load conversation: %w", err)
	}
	out := map[string][]byte{}
	for _, c := range chunks {
		out[c.Path] = append(out[c.Path], c.Data...)
	}
	return out, nil
}
