package sqlite

import (
	"context"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
)

// testStore is the store on SQLite with its dialect at hand, for the tests
// that reach under the policy (the writer, the schema, the read pool).
type testStore struct {
	*Store
	db *DB
}

func openStore(path string, clk clock.Clock) (*testStore, error) {
	d, err := OpenDB(path)
	if err != nil {
		return nil, err
	}
	return &testStore{Store: store.New(d, clk, store.Options[*Tx]{}), db: d}, nil
}

func (s *testStore) write(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return s.db.Write(ctx, false, fn)
}

func (s *testStore) writeLazy(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	return s.db.Write(ctx, true, fn)
}

func (s *testStore) accept(ctx context.Context, chat, text, clientID, id string) (string, bool, error) {
	return s.AcceptID(ctx, chat, text, clientID, id)
}
