package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

func TestIdleInTransaction(t *testing.T) {
	for _, tt := range []struct {
		ttl, want time.Duration
	}{
		{0, writeTimeout},
		{-time.Second, writeTimeout},
		{3 * time.Second, 1500 * time.Millisecond},
		{15 * time.Second, 7500 * time.Millisecond},
		{time.Minute, 30 * time.Second},
	} {
		if got := idleInTransaction(tt.ttl); got != tt.want {
			t.Errorf("idleInTransaction(%s) = %s, want %s", tt.ttl, got, tt.want)
		}
	}
}

// A transaction left idle (its node paused between two statements) is
// ended by the server once idle_in_transaction_session_timeout passes: its
// row lock is released, so another node's write goes through, and the
// paused node's commit, when it runs again, fails as a storage error.
func TestPausedTransactionEnded(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, pgtest.NewDatabase(t), Options{LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var setting string
	if err := db.pool.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "1s" {
		t.Errorf("idle_in_transaction_session_timeout = %q, want 1s (half the lease ttl)", setting)
	}
	locked := make(chan struct{})
	other := make(chan error, 1)
	var took time.Duration
	go func() {
		<-locked
		// another node's write on the locked row: without the timeout it
		// waits for the paused transaction until this context ends
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := db.pool.Exec(octx, `UPDATE feed SET last = last`)
		took = time.Since(start)
		other <- err
	}()
	werr := db.Write(ctx, false, func(ctx context.Context, tx *Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, `SELECT last FROM feed FOR UPDATE`).Scan(&last); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE feed SET last = last`); err != nil {
			return err
		}
		close(locked)
		// paused: no statement until the other write is through
		if err := <-other; err != nil {
			t.Errorf("the other write waited on the paused transaction's lock: %v", err)
		} else {
			t.Logf("the other write went through after %s", took.Round(time.Millisecond))
		}
		return nil
	})
	if werr == nil {
		t.Fatal("the paused transaction committed after the server should have ended it")
	}
	if !errors.Is(werr, store.ErrIO) {
		t.Errorf("the paused transaction's error is not a storage error: %v", werr)
	}
	t.Logf("the resumed transaction saw: %v", werr)
	// the pool replaces the closed connection: writes go on
	if err := db.Write(ctx, false, func(ctx context.Context, tx *Tx) error {
		_, err := tx.Exec(ctx, `UPDATE feed SET last = last`)
		return err
	}); err != nil {
		t.Errorf("a write after the ended transaction: %v", err)
	}
}
