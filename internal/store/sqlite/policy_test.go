package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
)

// fakeFence records the chats each write asked it to hold and refuses the
// ones in lost.
type fakeFence struct {
	mu    sync.Mutex
	held  [][]string
	lost  map[string]bool
	woken []string
}

func (f *fakeFence) Hold(_ context.Context, _ *Tx, chats []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = append(f.held, slices.Clone(chats))
	for _, c := range chats {
		if f.lost[c] {
			return fmt.Errorf("chat %q: %w", c, store.ErrFenced)
		}
	}
	return nil
}

func (f *fakeFence) Wake(_ context.Context, chat string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.woken = append(f.woken, chat)
}

// last returns the chats the last write held and forgets what came before.
func (f *fakeFence) last() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.held) == 0 {
		return nil
	}
	h := f.held[len(f.held)-1]
	f.held = nil
	return h
}

// The policy fences every write for a chat — and only those — with the
// chats the write touches, and a refusal writes nothing; it wakes the
// owner after an accept (not a duplicate) and a retry. The mechanism is
// the dialect's and the cluster's (internal/cluster's tests run it on
// PostgreSQL); which writes are fenced is the policy's, checked here.
func TestPolicyFencesChatWrites(t *testing.T) {
	d, err := OpenDB(filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFence{lost: map[string]bool{}}
	s := store.New(d, clock.NewFake(t0), store.Options[*Tx]{Fence: f, Waker: f})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	id, _, err := s.Accept(ctx, "a", "one", "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err := s.Accept(ctx, "a", "one", "k"); err != nil || !dup {
		t.Fatalf("resend: dup=%v err=%v", dup, err)
	}
	if got := f.last(); got != nil {
		t.Fatalf("an accept held %v: accepts are not fenced (any node takes messages)", got)
	}
	if !slices.Equal(f.woken, []string{"a"}) {
		t.Fatalf("woken %v, want [a] (once: a duplicate wakes nobody)", f.woken)
	}

	check := func(what string, err error, want ...string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := f.last(); !slices.Equal(got, want) {
			t.Fatalf("%s held %v, want %v", what, got, want)
		}
	}
	_, _, err = s.Claim(ctx, "a", 10)
	check("Claim", err, "a")
	check("Requeue", s.Requeue(ctx, []string{id}, "outage"), "a")
	_, _, err = s.Claim(ctx, "a", 10)
	check("Claim", err, "a")
	_, err = s.Fail(ctx, []string{id}, "bad", 1)
	check("Fail", err, "a")
	check("Retry", s.Retry(ctx, id))
	if !slices.Equal(f.woken, []string{"a", "a"}) {
		t.Fatalf("woken %v, want the retry's wake-up too", f.woken)
	}
	_, _, err = s.Claim(ctx, "a", 10)
	check("Claim", err, "a")
	check("SaveSession", s.SaveSession(ctx, store.SessionRecord{ChatID: "b"}), "b")
	check("RecordReset", s.RecordReset(ctx, "b", "why"), "b")
	check("SaveConversation", s.SaveConversation(ctx, "b", []store.ConvChange{{Path: "p", Data: []byte("x"), Size: 1, Hash: []byte{1}}}), "b")
	check("CompleteTurn", s.CompleteTurn(ctx, []string{id}, "hi", store.SessionRecord{ChatID: "a"}), "a")

	// A lost chat: the write is refused and changes nothing.
	id2, _, err := s.Accept(ctx, "c", "two", "")
	if err != nil {
		t.Fatal(err)
	}
	f.lost["c"] = true
	if _, _, err := s.Claim(ctx, "c", 10); !store.IsFenced(err) {
		t.Fatalf("Claim of a lost chat: %v, want fenced", err)
	}
	if m, _ := s.Get(ctx, id2); m.State != store.Pending || m.Attempts != 0 {
		t.Fatalf("a refused claim changed the message: %+v", m)
	}
	if err := s.SaveSession(ctx, store.SessionRecord{ChatID: "c", Failed: true}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("SaveSession of a lost chat: %v, want fenced", err)
	}
	if _, found, _ := s.SessionRecord(ctx, "c"); found {
		t.Fatal("a refused session save was stored")
	}
}
