package webhook

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Endpoint is one configured receiver.
type Endpoint struct {
	// Name identifies the endpoint in the outbox, in status and in
	// `dispatch webhooks retry`; it defaults to the URL's host and path.
	Name   string
	URL    string
	Secret string        // "whsec_<base64>"; never logged or shown
	Events []events.Type // nil: every type
	// Timeout bounds one delivery attempt; RetryFor how long a delivery
	// is retried after its first attempt before it gives up.
	Timeout  time.Duration
	RetryFor time.Duration
}

// Defaults of an Endpoint.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultRetryFor = 24 * time.Hour
)

// DefaultName is the name an endpoint gets when none is given: its URL's
// host and path (never its user info or query, which may hold secrets).
func DefaultName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Host + strings.TrimSuffix(u.EscapedPath(), "/")
}

// Redact returns the URL as status may show it: scheme, host and path.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(invalid URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// CheckURL accepts only absolute http and https URLs.
func CheckURL(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return errors.New("is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must be an http or https URL, got scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

// wants reports whether the endpoint gets events of type t: the types it
// names, or every type but the opt-in ones (progress) when it names none.
func (e Endpoint) wants(t events.Type) bool {
	if len(e.Events) == 0 {
		return !t.OptIn()
	}
	return slices.Contains(e.Events, t)
}

// Store is what delivery needs from the durable store.
type Store interface {
	EventsVisible() (int64, <-chan struct{})
	EventsBySeq(ctx context.Context, seqs []int64) (map[int64]events.Event, error)
	OutboxPending(ctx context.Context, endpoint string, after int64, limit int) ([]store.OutboxRow, error)
	OutboxFailed(ctx context.Context, endpoint string, limit int) ([]store.OutboxRow, error)
	OutboxCounts(ctx context.Context) (map[string][2]int, error)
	OutboxDelivered(ctx context.Context, endpoint string, seqs []int64) error
	OutboxAttempt(ctx context.Context, r store.OutboxRow) error
	OutboxGiveUp(ctx context.Context, r store.OutboxRow) error
	OutboxRetry(ctx context.Context, endpoint string) ([]store.OutboxRow, error)
}

// Options tune delivery; zero values take the defaults.
type Options struct {
	Log *slog.Logger
	// Registry receives the delivery metrics (nil: none).
	Registry prometheus.Registerer
	// Parallel bounds concurrent deliveries per endpoint (32).
	Parallel int
	// BackoffInitial and BackoffMax shape the retry delay: doubling from
	// the first, capped at the second, jittered (1s, 10m).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// Clock times retries, backoff and lag (default: the wall clock).
	Clock clock.Clock
}

// Manager delivers to every configured endpoint.
type Manager struct {
	st   Store
	opt  Options
	log  *slog.Logger
	clk  clock.Clock
	eps  []*dispatcher
	byNm map[string]*dispatcher

	deliveries *prometheus.CounterVec

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// wrote, when set (tests), is called after each delivery's outcome
	// and each record of deliveries written.
	wrote func()
}

// New checks the endpoints and builds a manager; Start starts delivery.
func New(st Store, eps []Endpoint, opt Options) (*Manager, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 32
	}
	if opt.BackoffInitial <= 0 {
		opt.BackoffInitial = time.Second
	}
	if opt.BackoffMax <= 0 {
		opt.BackoffMax = 10 * time.Minute
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	m := &Manager{st: st, opt: opt, log: opt.Log, clk: opt.Clock, byNm: map[string]*dispatcher{}}
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dispatch_webhook_deliveries_total",
		Help: "Webhook delivery attempts by endpoint and outcome (delivered, retry, failed).",
	}, []string{"endpoint", "outcome"})
	for i, ep := range eps {
		if ep.Name == "" {
			ep.Name = DefaultName(ep.URL)
		}
		if err := CheckURL(ep.URL); err != nil {
			return nil, fmt.Errorf("webhooks[%d].url %s", i, err)
		}
		key, err := ParseSecret(ep.Secret)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d].secret %s", i, err)
		}
		if _, dup := m.byNm[ep.Name]; dup {
			return nil, fmt.Errorf("webhooks[%d]: two endpoints named %q; give them distinct names", i, ep.Name)
		}
		if ep.Timeout <= 0 {
			ep.Timeout = DefaultTimeout
		}
		if ep.RetryFor <= 0 {
			ep.RetryFor = DefaultRetryFor
		}
		tr := opt.Transport
		if tr == nil {
			tr = &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: min(ep.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        opt.Parallel,
				MaxIdleConnsPerHost: opt.Parallel,
				MaxConnsPerHost:     opt.Parallel,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: min(ep.Timeout, 10*time.Second),
			}
		}
		d := &dispatcher{
			m: m, ep: ep, key: key,
			client: &http.Client{
				Transport: tr,
				Timeout:   ep.Timeout,
				// A redirect is not followed: its answer is the endpoint's.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
			log:     m.log.With("webhook", ep.Name),
			chats:   map[string]*chatQueue{},
			wake:    make(chan struct{}, 1),
			results: make(chan result, opt.Parallel),
			retried: make(chan []store.OutboxRow, 4),
			marks:   make(chan int64, 4096),
			oldest:  map[int64]time.Time{},
		}
		m.eps = append(m.eps, d)
		m.byNm[ep.Name] = d
	}
	if opt.Registry != nil && len(m.eps) > 0 {
		for _, d := range m.eps {
			for _, o := range []string{outcomeDelivered, outcomeRetry, outcomeFailed} {
				m.deliveries.WithLabelValues(d.ep.Name, o)
			}
		}
		if err := opt.Registry.Register(m.deliveries); err != nil {
			return nil, err
		}
		if err := opt.Registry.Register(lagCollector{m}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Fanout returns the names of the endpoints subscribed to t: the store
// queues each new event for them in the event's own commit.
func (m *Manager) Fanout(t events.Type) []string {
	var out []string
	for _, d := range m.eps {
		if d.ep.wants(t) {
			out = append(out, d.ep.Name)
		}
	}
	return out
}

// Endpoints returns the configured endpoint names.
func (m *Manager) Endpoints() []string {
	out := make([]string, len(m.eps))
	for i, d := range m.eps {
		out[i] = d.ep.Name
	}
	return out
}

// Start starts one dispatcher per endpoint. A stopped manager may be
// started again (a cluster node that loses the webhooks role and gains it
// back): each dispatcher reads its endpoint's pending deliveries from the
// store afresh.
func (m *Manager) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	for _, d := range m.eps {
		m.wg.Add(2)
		go func() { defer m.wg.Done(); d.run(ctx) }()
		go func() { defer m.wg.Done(); d.marker(ctx) }()
	}
}

// Stop stops delivery: attempts in flight are abandoned (they are sent
// again at the next start) and Stop returns once every goroutine ended.
func (m *Manager) Stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
}

// ErrUnknownEndpoint is returned for a name no endpoint has.
var ErrUnknownEndpoint = errors.New("unknown webhook endpoint")

// Retry puts endpoint's failed deliveries back in line, with a fresh retry
// budget, and returns how many there were.
func (m *Manager) Retry(ctx context.Context, name string) (int, error) {
	d, ok := m.byNm[name]
	if !ok {
		return 0, ErrUnknownEndpoint
	}
	rows, err := m.st.OutboxRetry(ctx, name)
	if err != nil {
		return 0, err
	}
	if len(rows) > 0 {
		select {
		case d.retried <- rows:
		case <-ctx.Done():
			// The rows are pending in the store: the next start sends them.
			return len(rows), ctx.Err()
		}
	}
	m.log.Info("webhook: failed deliveries put back in line", "webhook", name, "count", len(rows))
	return len(rows), nil
}

// EndpointStatus and Delivery, an endpoint's delivery state and one failed
// delivery, are the wire package's shapes.
type (
	EndpointStatus = wire.EndpointStatus
	Delivery       = wire.Delivery
)

// Status reports every endpoint; withFailed also lists failed deliveries
// (at most limit per endpoint).
func (m *Manager) Status(ctx context.Context, withFailed bool, limit int) ([]EndpointStatus, error) {
	counts, err := m.st.OutboxCounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]EndpointStatus, 0, len(m.eps))
	now := m.clk.Now()
	for _, d := range m.eps {
		types := []string{}
		for _, t := range d.ep.Events {
			types = append(types, string(t))
		}
		if len(types) == 0 {
			types = []string{"*"}
		}
		d.mu.Lock()
		es := EndpointStatus{
			Name: d.ep.Name, URL: Redact(d.ep.URL), Events: types,
			Pending: counts[d.ep.Name][0], Failed: counts[d.ep.Name][1],
			Delivered: d.delivered, Retries: d.retries, GaveUp: d.gaveUp,
			LagSeconds: d.lagLocked(now), LastError: d.lastErr,
		}
		d.mu.Unlock()
		if withFailed && es.Failed > 0 {
			rows, err := m.st.OutboxFailed(ctx, d.ep.Name, limit)
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				es.FailedDeliveries = append(es.FailedDeliveries, Delivery{
					EventID: events.IDOf(r.Seq), Seq: r.Seq, ChatID: r.ChatID, Attempts: r.Attempts,
					Error: r.Error, At: r.Updated.UTC().Format(time.RFC3339),
				})
			}
		}
		out = append(out, es)
	}
	return out, nil
}

const (
	outcomeDelivered = "delivered"
	outcomeRetry     = "retry"
	outcomeFailed    = "failed"
)

// maxLoaded bounds the deliveries one endpoint holds in memory; more are
// read from the store as these go out.
const maxLoaded = 50000

// dispatcher delivers to one endpoint. Its run goroutine owns the queues;
// deliveries run in goroutines of their own, at most Parallel at once.
type dispatcher struct {
	m      *Manager
	ep     Endpoint
	key    []byte
	client *http.Client
	log    *slog.Logger

	// owned by run
	chats   map[string]*chatQueue
	ready   []*chatQueue // head due, not in flight
	backoff waitHeap     // head waiting for its retry time
	cursor  int64        // rows up to this seq are loaded
	loaded  int
	full    bool // maxLoaded reached: load more once some went out
	active  int

	wake    chan struct{}
	results chan result
	retried chan []store.OutboxRow
	marks   chan int64

	mu        sync.Mutex // guards the figures below, read by Status and metrics
	oldest    map[int64]time.Time
	delivered int64
	retries   int64
	gaveUp    int64
	lastErr   string
}

type chatQueue struct {
	chat   string
	rows   []store.OutboxRow // in seq order; rows[0] is the head
	busy   bool              // its head is being delivered
	queued bool              // in ready or backoff
	index  int               // in backoff
}

type result struct {
	q       *chatQueue
	row     store.OutboxRow
	outcome string
}

func (d *dispatcher) run(ctx context.Context) {
	d.reset()
	defer func() {
		for d.active > 0 { // let deliveries in flight report before leaving
			<-d.results
			d.active--
		}
	}()
	clk := d.m.clk
	var lastLoad time.Time
	for {
		_, changed := d.m.st.EventsVisible()
		if !d.full {
			lastLoad = clk.Now()
			if err := d.load(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				d.log.Error("webhook: read the outbox", "err", err)
				changed = nil // try again after a pause
			}
		}
		now := clk.Now()
		for d.backoff.Len() > 0 && !d.backoff[0].rows[0].NextAt.After(now) {
			q := heap.Pop(&d.backoff).(*chatQueue)
			d.ready = append(d.ready, q)
		}
		for d.active < d.m.opt.Parallel && len(d.ready) > 0 {
			q := d.ready[0]
			d.ready = d.ready[1:]
			q.queued, q.busy = false, true
			d.active++
			go d.deliver(ctx, q, q.rows[0])
		}
		var (
			tick  <-chan time.Time
			timer clock.Timer
		)
		if d.backoff.Len() > 0 || changed == nil {
			wait := time.Second
			if d.backoff.Len() > 0 {
				wait = max(d.backoff[0].rows[0].NextAt.Sub(now), time.Millisecond)
			}
			timer = clk.NewTimer(wait)
			tick = timer.C()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-changed:
			// Commits come in bursts (every turn writes its reply): one
			// read of the outbox per loadGap serves a whole burst, where a
			// read per commit cost the writer's accepts a tenth of their
			// speed. A new event waits at most loadGap longer for it.
			if wait := loadGap - clk.Now().Sub(lastLoad); wait > 0 {
				t := clk.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					if timer != nil {
						timer.Stop()
					}
					return
				case <-t.C():
				}
			}
		case <-tick:
		case <-d.wake:
		case r := <-d.results:
			d.active--
			d.finish(r)
			// Take every other result that is ready before looking again.
			for more := true; more; {
				select {
				case r := <-d.results:
					d.active--
					d.finish(r)
				default:
					more = false
				}
			}
		case rows := <-d.retried:
			for _, r := range rows {
				if r.Seq <= d.cursor { // later ones are loaded in their turn
					d.add(r)
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// reset forgets what an earlier run held in memory: deliveries it had
// loaded, or had in flight when it was stopped, are read from the store
// again (the store keeps every delivery until it is recorded as done).
func (d *dispatcher) reset() {
	d.chats = map[string]*chatQueue{}
	d.ready, d.backoff = nil, nil
	d.cursor, d.loaded, d.full, d.active = 0, 0, false, 0
	d.mu.Lock()
	d.oldest = map[int64]time.Time{}
	d.mu.Unlock()
}

// loadGap is the least time between two reads of the outbox woken by new
// commits.
const loadGap = 5 * time.Millisecond

// load reads the pending deliveries committed since the last load.
func (d *dispatcher) load(ctx context.Context) error {
	for d.loaded < maxLoaded {
		rows, err := d.m.st.OutboxPending(ctx, d.ep.Name, d.cursor, min(1000, maxLoaded-d.loaded))
		if err != nil {
			return err
		}
		for _, r := range rows {
			d.add(r)
			d.cursor = r.Seq
		}
		if len(rows) < 1000 {
			return nil
		}
	}
	d.full = true
	return nil
}

// add queues one pending delivery behind its chat's earlier ones.
func (d *dispatcher) add(r store.OutboxRow) {
	q := d.chats[r.ChatID]
	if q == nil {
		q = &chatQueue{chat: r.ChatID, index: -1}
		d.chats[r.ChatID] = q
	}
	i, found := slices.BinarySearchFunc(q.rows, r.Seq, func(a store.OutboxRow, seq int64) int {
		return compare(a.Seq, seq)
	})
	if found {
		return
	}
	if i == 0 && q.busy {
		i = 1 // the head is in flight; an older retried row goes next
	}
	if i > len(q.rows) {
		i = len(q.rows)
	}
	q.rows = slices.Insert(q.rows, i, r)
	d.loaded++
	d.mu.Lock()
	d.oldest[r.Seq] = r.EventAt
	d.mu.Unlock()
	if i == 0 && q.queued && q.index >= 0 {
		heap.Fix(&d.backoff, q.index) // a new head with another due time
	}
	d.schedule(q)
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// schedule puts a chat whose head is not in flight where it waits: ready,
// or in backoff until its retry time.
func (d *dispatcher) schedule(q *chatQueue) {
	if q.busy || q.queued || len(q.rows) == 0 {
		return
	}
	q.queued = true
	if q.rows[0].NextAt.After(d.m.clk.Now()) {
		heap.Push(&d.backoff, q)
		return
	}
	q.index = -1
	d.ready = append(d.ready, q)
}

// finish applies a delivery's outcome: the chat's next event may go once
// its head is delivered or given up; a retry keeps it at the head.
func (d *dispatcher) finish(r result) {
	q := r.q
	q.busy = false
	switch r.outcome {
	case outcomeRetry:
		q.rows[0] = r.row
	default:
		q.rows = q.rows[1:]
		d.loaded--
		d.mu.Lock()
		delete(d.oldest, r.row.Seq)
		d.mu.Unlock()
		if d.full && d.loaded < maxLoaded/2 {
			d.full = false
		}
	}
	if len(q.rows) == 0 {
		delete(d.chats, q.chat)
		return
	}
	d.schedule(q)
}

// deliver makes one attempt and reports its outcome to run.
func (d *dispatcher) deliver(ctx context.Context, q *chatQueue, row store.OutboxRow) {
	outcome := d.attempt(ctx, &row)
	select {
	case d.results <- result{q: q, row: row, outcome: outcome}:
	case <-ctx.Done():
		d.results <- result{q: q, row: row, outcome: outcomeRetry}
	}
}

func (d *dispatcher) attempt(ctx context.Context, row *store.OutboxRow) string {
	evs, err := d.m.st.EventsBySeq(ctx, []int64{row.Seq})
	if err != nil {
		return d.retry(ctx, row, "read the event: "+err.Error(), 0)
	}
	ev, ok := evs[row.Seq]
	if !ok {
		// Purged past its retention before it could be delivered.
		d.log.Warn("webhook: event no longer kept; dropping its delivery", "event", events.IDOf(row.Seq))
		d.markDelivered(ctx, row.Seq)
		return outcomeFailed
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return d.giveUp(ctx, row, "encode the event: "+err.Error())
	}
	now := d.m.clk.Now()
	if row.FirstAt.IsZero() {
		row.FirstAt = now
	}
	row.Attempts++
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.ep.URL, bytes.NewReader(body))
	if err != nil {
		return d.giveUp(ctx, row, "build the request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dispatch-webhook/1")
	req.Header.Set(HeaderID, ev.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(d.key, ev.ID, now, body))
	resp, err := d.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return outcomeRetry // shutting down: sent again at the next start
		}
		return d.retry(ctx, row, transportError(err), 0)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		d.markDelivered(ctx, row.Seq)
		d.count(outcomeDelivered, "")
		return outcomeDelivered
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return d.retry(ctx, row, "HTTP "+strconv.Itoa(c), retryAfter(resp.Header.Get("Retry-After"), now))
	default:
		return d.giveUp(ctx, row, fmt.Sprintf("HTTP %d: refused (not retried)", c))
	}
}

// transportError describes a failed request without the URL (which the
// error text repeats, and which may carry credentials).
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout: " + err.Error()
	}
	return "connection error: " + err.Error()
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Backoff is the delay before retry number n (1 for the first retry):
// initial doubling, capped at maxDelay, jittered down by up to a half so
// that many failed deliveries do not come back at the same moment.
func Backoff(n int, initial, maxDelay time.Duration, rnd func() float64) time.Duration {
	d := initial
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// retry schedules another attempt, or gives up when it would come after
// retry_for.
func (d *dispatcher) retry(ctx context.Context, row *store.OutboxRow, why string, after time.Duration) string {
	now := d.m.clk.Now()
	if row.FirstAt.IsZero() {
		row.FirstAt = now
	}
	delay := max(Backoff(max(row.Attempts, 1), d.m.opt.BackoffInitial, d.m.opt.BackoffMax, rand.Float64), after)
	if now.Add(delay).After(row.FirstAt.Add(d.ep.RetryFor)) {
		return d.giveUp(ctx, row, fmt.Sprintf("%s; gave up after %d attempts over %s", why, row.Attempts, now.Sub(row.FirstAt).Round(time.Second)))
	}
	row.NextAt = now.Add(delay)
	row.Error = why
	d.log.Debug("webhook: delivery failed; retrying", "event", events.IDOf(row.Seq), "err", why, "attempt", row.Attempts, "retry_in", delay)
	if err := d.m.st.OutboxAttempt(ctx, *row); err != nil && ctx.Err() == nil {
		d.log.Warn("webhook: record a failed attempt", "err", err)
	}
	d.count(outcomeRetry, why)
	return outcomeRetry
}

// giveUp marks the delivery failed, durably (retried until the store takes
// it, so a refusal is never sent again on every restart).
func (d *dispatcher) giveUp(ctx context.Context, row *store.OutboxRow, why string) string {
	row.Error = why
	d.log.Error("webhook: delivery failed for good; `dispatch webhooks retry` sends it again",
		"event", events.IDOf(row.Seq), "chat", row.ChatID, "attempts", row.Attempts, "err", why)
	for try := 0; ; try++ {
		err := d.m.st.OutboxGiveUp(ctx, *row)
		if err == nil || ctx.Err() != nil {
			break
		}
		d.log.Warn("webhook: record a failed delivery; retrying", "err", err)
		d.sleep(ctx, Backoff(try+1, 250*time.Millisecond, 10*time.Second, rand.Float64))
	}
	d.count(outcomeFailed, why)
	return outcomeFailed
}

// sleep waits d on the manager's clock, or until ctx ends.
func (d *dispatcher) sleep(ctx context.Context, wait time.Duration) {
	clock.Sleep(ctx, d.m.clk, wait)
}

func (d *dispatcher) count(outcome, why string) {
	d.m.deliveries.WithLabelValues(d.ep.Name, outcome).Inc()
	if d.m.wrote != nil {
		defer d.m.wrote()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch outcome {
	case outcomeDelivered:
		d.delivered++
		d.lastErr = "" // the endpoint answers again: its trouble is over

	case outcomeRetry:
		d.retries++
		d.lastErr = why
	case outcomeFailed:
		d.gaveUp++
		d.lastErr = why
	}
}

// markDelivered queues the delivered row's deletion; marker writes them in
// batches.
func (d *dispatcher) markDelivered(ctx context.Context, seq int64) {
	select {
	case d.marks <- seq:
	case <-ctx.Done():
	}
}

// marker deletes delivered rows, many per write.
func (d *dispatcher) marker(ctx context.Context) {
	var batch []int64
	flush := func(ctx context.Context) {
		for len(batch) > 0 {
			err := d.m.st.OutboxDelivered(ctx, d.ep.Name, batch)
			if err == nil {
				batch = batch[:0]
				if d.m.wrote != nil {
					d.m.wrote()
				}
				return
			}
			if ctx.Err() != nil {
				return // sent again at the next start: receivers dedupe
			}
			d.log.Warn("webhook: record deliveries; retrying", "err", err)
			d.sleep(ctx, time.Second)
		}
	}
	for {
		select {
		case <-ctx.Done():
			// Record what is already known, briefly, then leave.
			for more := true; more; {
				select {
				case s := <-d.marks:
					batch = append(batch, s)
				default:
					more = false
				}
			}
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return
		case s := <-d.marks:
			batch = append(batch, s)
		}
		for more := true; more && len(batch) < 2000; {
			select {
			case s := <-d.marks:
				batch = append(batch, s)
			default:
				more = false
			}
		}
		flush(ctx)
	}
}

// lagLocked is the age of the oldest event still to be delivered (d.mu
// held).
func (d *dispatcher) lagLocked(now time.Time) float64 {
	var oldest time.Time
	for _, at := range d.oldest {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest).Seconds(), 0)
}

var descLag = prometheus.NewDesc("dispatch_webhook_lag_seconds",
	"Age of the oldest event an endpoint still has to receive (0 when it is up to date).", []string{"endpoint"}, nil)

type lagCollector struct{ m *Manager }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descLag }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.clk.Now()
	for _, d := range c.m.eps {
		d.mu.Lock()
		lag := d.lagLocked(now)
		d.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag, d.ep.Name)
	}
}

// waitHeap orders chats by their head's retry time.
type waitHeap []*chatQueue

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].rows[0].NextAt.Before(h[j].rows[0].NextAt) }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	q := x.(*chatQueue)
	q.index = len(*h)
	*h = append(*h, q)
}
func (h *waitHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	*h = old[:len(old)-1]
	q.index = -1
	return q
}
