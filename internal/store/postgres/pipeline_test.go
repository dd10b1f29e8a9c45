package postgres

import (
	"context"
	"testing"

	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// A statement sent later (with the next one, or the COMMIT) that fails
// fails its whole write, as it would have at once: nothing it ran before
// is committed. A write that runs nothing commits nothing.
func TestPipelinedWrites(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	insert := func(tx *Tx, id string) error {
		_, err := tx.InsertMessage(ctx, store.NewMessage{ID: id, ChatID: "c", Text: "x", At: 1})
		return err
	}
	count := func() (n int) {
		if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		name string
		fn   func(tx *Tx) error
		ok   bool
		rows int
	}{
		{"nothing", func(tx *Tx) error { return tx.LockChat(ctx, "c") }, true, 0},
		{"later fails at commit", func(tx *Tx) error {
			if err := insert(tx, "a"); err != nil {
				return err
			}
			tx.execLater(`SELECT 1/0`)
			return nil
		}, false, 0},
		{"later fails with the next statement", func(tx *Tx) error {
			_ = tx.LockChat(ctx, "c")
			tx.execLater(`SELECT 1/0`)
			return insert(tx, "a")
		}, false, 0},
		{"later and locks go first", func(tx *Tx) error {
			_ = tx.LockChat(ctx, "c")
			if err := tx.SetMeta(ctx, "k", 1); err != nil {
				return err
			}
			return insert(tx, "b")
		}, true, 1},
		{"only later", func(tx *Tx) error { return tx.SetMeta(ctx, "k", 2) }, true, 1},
	} {
		err := d.Write(ctx, false, func(ctx context.Context, tx *Tx) error { return tc.fn(tx) })
		if (err == nil) != tc.ok {
			t.Fatalf("%s: Write = %v", tc.name, err)
		}
		if n := count(); n != tc.rows {
			t.Fatalf("%s: %d messages stored, want %d", tc.name, n, tc.rows)
		}
	}
	var v int64
	if err := d.pool.QueryRow(ctx, `SELECT v FROM meta WHERE k = 'k'`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("meta k = %d, %v; want 2", v, err)
	}
	// The pool's connections came back idle, usable.
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
