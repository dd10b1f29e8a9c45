package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/webhook"
)

// BenchmarkAcceptWithSlowWebhook is the durable accept path (eight clients,
// through the supervisor, echo sessions answering every message) with no
// webhook, with one that answers at once, and with one that takes 10 s to
// answer every delivery: the slow endpoint must leave accept throughput
// within 10 % of none. Compare the msgs/s of the sub-benchmarks:
//
//	go test -run XXX -bench AcceptWithSlowWebhook -benchtime 5s -count 3 ./internal/bench/
func BenchmarkAcceptWithSlowWebhook(b *testing.B) {
	for _, delay := range []time.Duration{-1, 0, 10 * time.Second} {
		name := "no-webhook"
		switch {
		case delay == 0:
			name = "fast-webhook"
		case delay > 0:
			name = "slow-webhook-10s"
		}
		b.Run(name, func(b *testing.B) {
			p := newInProcess(b)
			if delay >= 0 {
				stop := make(chan struct{})
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-time.After(delay):
					case <-r.Context().Done():
					case <-stop:
					}
				}))
				m, err := webhook.New(p.st, []webhook.Endpoint{{
					Name: "slow", URL: srv.URL, Secret: "whsec_YmVuY2ggc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXMh",
					Timeout: 11 * time.Second,
				}}, webhook.Options{})
				if err != nil {
					b.Fatal(err)
				}
				p.st.SetWebhookFanout(m.Fanout)
				m.Start()
				b.Cleanup(func() { close(stop); m.Stop(); srv.Close() })
			}
			benchSubmit(b, p)
		})
	}
}

func benchSubmit(b *testing.B, p *inProcess) {
	const clients = 8
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		chat := fmt.Sprintf("chat-%d", n.Add(1))
		for pb.Next() {
			if _, _, err := p.sup.Submit(ctx, chat, "hello", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
