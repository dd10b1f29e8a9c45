package sqlite

import (
	"context"
	"fmt"
	"github.com/dispatchd/dispatch/internal/store"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
)

// BenchmarkAcceptParallel measures durable accept throughput with 8
// concurrent clients, the figure group commit exists for (the target is at
// least 5,000 msgs/s). Every Accept is committed with synchronous=FULL before it returns.
func BenchmarkAcceptParallel(b *testing.B) {
	const clients = 8
	s, err := openStore(filepath.Join(b.TempDir(), "bench.db"), clock.Real{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var chat atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		chatID := fmt.Sprintf("chat-%d", chat.Add(1))
		for pb.Next() {
			if _, _, err := s.Accept(ctx, chatID, "hello", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/float64(s.db.commits.Load()), "msgs/commit")
}

// BenchmarkTurn is one chat's whole write path per message, one message at
// a time: accept, claim, complete, save the session — what the send → done
// latency of a quiet chat is made of (three fsyncs: the claim has none).
func BenchmarkTurn(b *testing.B) {
	s, err := openStore(filepath.Join(b.TempDir(), "bench.db"), clock.Real{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rec := store.SessionRecord{ChatID: "c", SessionID: "s"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id, _, err := s.Accept(ctx, "c", "hello", "")
		if err != nil {
			b.Fatal(err)
		}
		if msgs, _, err := s.Claim(ctx, "c", 50); err != nil || len(msgs) != 1 {
			b.Fatalf("claim: %v, %v", msgs, err)
		}
		if err := s.Complete(ctx, []string{id}, "hello"); err != nil {
			b.Fatal(err)
		}
		rec.Turns++
		if err := s.SaveSession(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet is the read behind GET /v1/messages/{id}, which a client
// waiting for its reply polls.
func BenchmarkGet(b *testing.B) {
	s, err := openStore(filepath.Join(b.TempDir(), "bench.db"), clock.Real{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	id, _, err := s.Accept(ctx, "c", "hello", "")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
