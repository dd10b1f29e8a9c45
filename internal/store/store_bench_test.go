package store

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
)

// BenchmarkAcceptParallel measures durable accept throughput with 8
// concurrent clients, the figure group commit exists for (SPEC: ≥5,000
// msgs/s). Every Accept is committed with synchronous=FULL before it returns.
func BenchmarkAcceptParallel(b *testing.B) {
	const clients = 8
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), clock.Real{})
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
	b.ReportMetric(float64(b.N)/float64(s.commits.Load()), "msgs/commit")
}
