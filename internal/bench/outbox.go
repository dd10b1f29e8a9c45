package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/events"
)

// Targets of the outbox figures.
const (
	TargetFeedP99    = 10 * time.Millisecond // reply visible on a waiting long poll after its turn ends
	TargetWebhookRPS = 2000                  // webhook deliveries per second to a loopback receiver
)

// Phases of the outbox.
const (
	PhaseFeed     = "feed"
	PhaseWebhooks = "webhooks"
)

// FeedResult is the long-poll phase: how soon a reply is visible to a
// waiting GET /v1/events after its turn ended (the reply event's time,
// taken as the turn ends, before its commit).
type FeedResult struct {
	Samples int  `json:"samples"`
	Visible Dist `json:"visible_after_turn"`
}

// WebhookResult is the delivery phase: the endpoint held every request
// (answering none) while the earlier phases ran, so every reply they made
// waited in the outbox; then it answered at once, and the backlog drained.
type WebhookResult struct {
	Delivered int           `json:"delivered"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	PerSec    float64       `json:"per_sec"`
}

// hookReceiver is the bench's loopback webhook endpoint. Until open is
// closed it holds every request; then it answers 204 at once.
type hookReceiver struct {
	ln     net.Listener
	srv    *http.Server
	open   chan struct{}
	once   sync.Once
	count  atomic.Int64
	lastNS atomic.Int64
}

func startReceiver() (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookReceiver{ln: ln, open: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.open:
		case <-r.Context().Done():
			return
		}
		h.count.Add(1)
		h.lastNS.Store(time.Now().UnixNano())
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *hookReceiver) release() { h.once.Do(func() { close(h.open) }) }

func (h *hookReceiver) close() {
	h.release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
}

// webhookConfig is the config fragment for the bench's endpoint.
func (h *hookReceiver) webhookConfig() string {
	return fmt.Sprintf("webhooks:\n  - name: bench\n    url: http://%s/hook\n    secret: whsec_YmVuY2ggc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXMh\n    events: [reply]\n    timeout: 10m\n", h.ln.Addr())
}

// feed measures a reply's visibility on a waiting long poll: for each
// sample, a GET /v1/events?wait=30s waits on one chat, a message is sent,
// and the time from the reply event's time to the poll's answer counts.
func (r *runner) feed(ctx context.Context) (*FeedResult, error) {
	n := min(r.o.Samples, 500)
	chat := "feed-" + r.run
	poller, sender := newConn(r.t.socket), newConn(r.t.socket)
	defer poller.close()
	defer sender.close()
	q := url.Values{"chat": {chat}, "types": {"reply"}, "wait": {"30s"}}
	// The position to wait from: the feed's end for this chat.
	data, err := poller.do(ctx, "GET", "/v1/events?"+url.Values{"chat": {chat}, "limit": {"1000"}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var page api.EventsOut
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, err
	}
	after := page.Next
	r.progress("feed: %d replies, each awaited by a long poll", n)
	var lat []time.Duration
	for i := -10; i < n; i++ { // ten to warm up
		q.Set("after", fmt.Sprint(after))
		type res struct {
			page api.EventsOut
			at   time.Time
			err  error
		}
		got := make(chan res, 1)
		go func() {
			data, err := poller.do(ctx, "GET", "/v1/events?"+q.Encode(), nil)
			at := time.Now()
			var p api.EventsOut
			if err == nil {
				err = json.Unmarshal(data, &p)
			}
			got <- res{p, at, err}
		}()
		time.Sleep(time.Millisecond) // let the poll reach the daemon and wait
		if _, err := sender.send(ctx, chat, fmt.Sprintf("feed %d", i)); err != nil {
			return nil, err
		}
		g := <-got
		if g.err != nil {
			return nil, g.err
		}
		if len(g.page.Events) == 0 {
			return nil, fmt.Errorf("long poll came back empty")
		}
		ev := g.page.Events[0]
		after = g.page.Next
		if i >= 0 && ev.Type == events.Reply {
			lat = append(lat, g.at.Sub(ev.At))
		}
	}
	return &FeedResult{Samples: len(lat), Visible: summarize(lat)}, nil
}

// webhooks opens the held endpoint and times the backlog's delivery.
func (r *runner) webhooks(ctx context.Context, h *hookReceiver) (*WebhookResult, error) {
	// Everything earlier phases made must be answered (its reply queued)
	// before the endpoint opens.
	if err := r.drain(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	pending := func() (int, error) { return r.c.webhookPending(ctx) }
	backlog, err := pending()
	if err != nil {
		return nil, err
	}
	r.progress("webhooks: %d replies waiting for the held endpoint; opening it", backlog)
	start := time.Now()
	h.release()
	deadline := start.Add(5 * time.Minute)
	for {
		if int(h.count.Load()) >= backlog {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("webhooks: %d of %d delivered after 5 min", h.count.Load(), backlog)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	n := int(h.count.Load())
	elapsed := time.Unix(0, h.lastNS.Load()).Sub(start)
	return &WebhookResult{Delivered: n, Elapsed: elapsed, PerSec: float64(n) / elapsed.Seconds()}, nil
}
