package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

func openDB(t *testing.T) *DB {
	t.Helper()
	d, err := Open(context.Background(), pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// seqs returns the stored messages' seqs by id.
func seqs(t *testing.T, d *DB) map[string]int64 {
	t.Helper()
	rows, err := d.pool.Query(context.Background(), `SELECT id, seq FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var (
			id  string
			seq int64
		)
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		out[id] = seq
	}
	return out
}

// Concurrent accepts all get their answer, each stored once.
func TestAcceptConcurrent(t *testing.T) {
	ctx := context.Background()
	d := openDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ok, err := d.Accept(ctx, store.NewMessage{ID: fmt.Sprintf("%d-%d", c, i), ChatID: fmt.Sprint(c % 3), Text: "t", At: 1})
				if err != nil || !ok {
					errs <- fmt.Errorf("accept %d-%d: %v %v", c, i, ok, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(seqs(t, d)); n != 400 {
		t.Fatalf("%d stored, want 400", n)
	}
	ok, err := d.Accept(ctx, store.NewMessage{ID: "0-0", ChatID: "0", Text: "t", At: 1})
	if err != nil || ok {
		t.Fatalf("accept of a taken id: %v %v", ok, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Accept(cctx, store.NewMessage{ID: "late", ChatID: "0", Text: "t", At: 1}); err == nil {
		t.Fatal("accept with a cancelled context succeeded")
	}
}

// A claim's LockChat waits for the chat's accepts under way and then reads
// them; an accept does not wait for a claim that holds its chat.
func TestClaimWaitsForAcceptsNotTheOtherWay(t *testing.T) {
	ctx := context.Background()
	d := openDB(t)
	// An accept under way: the line lock shared, its row not committed.
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, lineSQL, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO messages (id, chat_id, text, state, created_at, updated_at)
		VALUES ('first', 'x', 'f', 'pending', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	read := make(chan []store.Message, 1)
	go func() {
		var got []store.Message
		err := d.Write(ctx, true, func(ctx context.Context, tx *Tx) (err error) {
			if err := tx.LockChat(ctx, "x"); err != nil {
				return err
			}
			got, err = tx.PendingMessages(ctx, "x", 10)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		read <- got
	}()
	time.Sleep(300 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-read; len(got) != 1 || got[0].ID != "first" {
		t.Fatalf("the claim read %v, want the accept it waited for", got)
	}

	// A claim holds the chat; an accept for it goes through meanwhile.
	held, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = d.Write(ctx, true, func(ctx context.Context, tx *Tx) error {
			if err := tx.LockChat(ctx, "x"); err != nil {
				return err
			}
			if _, err := tx.PendingMessages(ctx, "x", 10); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	acc := make(chan error, 1)
	go func() {
		ok, err := d.Accept(ctx, store.NewMessage{ID: "second", ChatID: "x", Text: "s", At: 2})
		if err == nil && !ok {
			err = fmt.Errorf("not stored")
		}
		acc <- err
	}()
	select {
	case err := <-acc:
		close(release)
		if err != nil {
			t.Fatalf("accept while a claim holds the chat: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatalf("an accept waited for a claim holding its chat: %v", <-acc)
	}
}
