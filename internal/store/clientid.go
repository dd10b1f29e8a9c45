package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ByClient returns the id of chat's message with clientID, in any state,
// and whether there is one (a chat channel asks whether it took in a
// given platform message, such as the message a Slack thread hangs from).
// It reads in the writer's transaction, like Accept's duplicate check, so
// it sees every committed message.
func (s *Store[T]) ByClient(ctx context.Context, chatID, clientID string) (id string, ok bool, err error) {
	if chatID == "" || clientID == "" {
		return "", false, nil
	}
	err = s.write(ctx, true, func(ctx context.Context, tx T) (err error) {
		id, _, err = tx.MessageByClient(ctx, chatID, clientID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: by client: %w", err)
	}
	return id, true, nil
}
