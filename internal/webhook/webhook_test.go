package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("a test secret of 32 bytes, ok..."))

// The signature matches the Standard Webhooks specification's test vector.
func TestSignSpecVector(t *testing.T) {
	key, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	ts := "1614265330"
	if err := Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		[]byte(`{"test": 2432232314}`), time.Unix(1614265330, 0), time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, got, []byte(`{"test": 2432232315}`), time.Unix(1614265330, 0), time.Minute); err == nil {
		t.Fatal("Verify accepted a changed body")
	}
	if err := Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", ts, got, []byte(`{"test": 2432232314}`), time.Unix(1614265330+3600, 0), time.Minute); err == nil {
		t.Fatal("Verify accepted an old timestamp")
	}
}

func TestParseSecretAndURL(t *testing.T) {
	for _, bad := range []string{"", "secret", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"ftp://x/y", "file:///etc/passwd", "/relative", "http://"} {
		if err := CheckURL(bad); err == nil {
			t.Errorf("CheckURL(%q) accepted", bad)
		}
	}
	if got := Redact("https://user:pw@bridge.example/hook?token=s3cret"); got != "https://bridge.example/hook" {
		t.Errorf("Redact = %q", got)
	}
	if got := DefaultName("https://user:pw@bridge.example/hook/?token=s3cret"); got != "bridge.example/hook" {
		t.Errorf("DefaultName = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	one := func() float64 { return 1 }
	zero := func() float64 { return 0 }
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 11: 10 * time.Minute, 50: 10 * time.Minute} {
		if got := Backoff(n, time.Second, 10*time.Minute, one); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
		if got := Backoff(n, time.Second, 10*time.Minute, zero); got != want/2 {
			t.Errorf("Backoff(%d) jittered down = %s, want %s", n, got, want/2)
		}
	}
}

// --- harness ---

type received struct {
	id, chat, typ string
	seq           int64
	header        http.Header
	body          []byte
}

// notifier tells waiting tests that something they may be waiting for
// happened: a request reached a receiver, a manager recorded an outcome.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// changed returns a channel closed at the next bump.
func (n *notifier) changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) bump() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// progress is the tests' one notifier: receivers and managers bump it.
var progress notifier

// waitUntil waits until cond holds, looking again at each bump; the bound
// (real time) only ends a test that would otherwise hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	bound := time.NewTimer(20 * time.Second)
	defer bound.Stop()
	for {
		ch := progress.changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-bound.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// drive moves clk to the deadline of each timer as soon as one is armed:
// the manager's waits (backoff, Retry-After, the load gap) pass at once in
// real time, in order, and every time the tests look at is clk's.
func drive(t *testing.T, clk *clock.Fake) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			when, err := clk.WaitNext(ctx, 24*time.Hour)
			if err != nil {
				return
			}
			if d := when.Sub(clk.Now()); d > 0 {
				clk.Advance(d)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// receiver records every request and answers with answer(n, r), n counting
// requests from 1.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	n      atomic.Int64
	answer func(n int64, r *http.Request, w http.ResponseWriter) bool // true: answered
}

func newReceiver(t *testing.T, answer func(n int64, r *http.Request, w http.ResponseWriter) bool) *receiver {
	rc := &receiver{t: t, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer progress.bump()
		body, _ := io.ReadAll(r.Body)
		n := rc.n.Add(1)
		var ev events.Event
		_ = json.Unmarshal(body, &ev)
		if rc.answer != nil && rc.answer(n, r, w) {
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{id: r.Header.Get(HeaderID), chat: ev.ChatID, typ: string(ev.Type), seq: ev.Seq, header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) delivered() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) waitFor(t *testing.T, n int) []received {
	t.Helper()
	var got []received
	waitUntil(t, fmt.Sprintf("%d deliveries", n), func() bool {
		got = rc.delivered()
		return len(got) >= n
	})
	return got
}

// rig is a test's store and the fake clock it shares with its managers,
// driven (drive).
type rig struct {
	st  *sqlite.Store
	clk *clock.Fake
}

func newRig(t *testing.T) rig {
	t.Helper()
	clk := clock.NewFake(time.Now())
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	drive(t, clk)
	return rig{st: st, clk: clk}
}

// newManager makes a manager on the rig's store and clock, not started.
func (r rig) newManager(t *testing.T, opt Options, eps ...Endpoint) *Manager {
	t.Helper()
	if opt.BackoffInitial == 0 {
		opt.BackoffInitial = 10 * time.Millisecond
		opt.BackoffMax = 40 * time.Millisecond
	}
	opt.Clock = r.clk
	m, err := New(r.st, eps, opt)
	if err != nil {
		t.Fatal(err)
	}
	m.wrote = progress.bump
	r.st.SetWebhookFanout(m.Fanout)
	return m
}

// startManager makes a manager and starts it until the test ends.
func (r rig) startManager(t *testing.T, opt Options, eps ...Endpoint) *Manager {
	t.Helper()
	m := r.newManager(t, opt, eps...)
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func emit(t *testing.T, st *sqlite.Store, chat string, i int) events.Event {
	t.Helper()
	ev, err := st.AppendEvent(context.Background(), events.Event{Type: events.SessionReset, ChatID: chat, Reason: fmt.Sprint(i)})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// checkOrder asserts that every chat's deliveries came in seq order, each
// event exactly once counting only successful deliveries.
func checkOrder(t *testing.T, got []received, want map[string][]int64) {
	t.Helper()
	per := map[string][]int64{}
	for _, r := range got {
		per[r.chat] = append(per[r.chat], r.seq)
	}
	for chat, seqs := range want {
		if !slices.Equal(per[chat], seqs) {
			t.Errorf("chat %s received %v, want %v", chat, per[chat], seqs)
		}
	}
}

// --- behaviour ---

// Every delivery verifies with the Standard Webhooks project's own Go
// library: an implementation independent of ours.
func TestSignatureVerifiedByStandardLibrary(t *testing.T) {
	rc := newReceiver(t, nil)
	r := newRig(t)
	st := r.st
	r.startManager(t, Options{}, Endpoint{URL: rc.srv.URL + "/hook", Secret: testSecret})
	ev := emit(t, st, "alice", 1)
	got := rc.waitFor(t, 1)[0]
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.header); err != nil {
		t.Fatalf("standard library verification: %v", err)
	}
	if got.id != ev.ID || got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("delivery id %q (want %q), content type %q", got.id, ev.ID, got.header.Get("Content-Type"))
	}
	var body events.Event
	if err := json.Unmarshal(got.body, &body); err != nil || body.ID != ev.ID || body.Seq != ev.Seq || body.ChatID != "alice" {
		t.Fatalf("body %s: %v", got.body, err)
	}
	other, _ := standardwebhooks.NewWebhook("whsec_" + base64.StdEncoding.EncodeToString([]byte("another secret of 32 bytes......")))
	if other.Verify(got.body, got.header) == nil {
		t.Fatal("verified under another secret")
	}
}

// An endpoint that fails for a while (connection errors, 503, 429, 408)
// and then recovers gets every event, each chat's in order.
func TestFailingEndpointRecoversInPerChatOrder(t *testing.T) {
	var recovered atomic.Bool
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if recovered.Load() {
			return false
		}
		switch n % 4 {
		case 0: // a transport error: the connection is dropped
			hj, _ := w.(http.Hijacker)
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusRequestTimeout)
		}
		return true
	})
	r := newRig(t)
	st := r.st
	m := r.startManager(t, Options{Parallel: 4}, Endpoint{URL: rc.srv.URL, Secret: testSecret})
	want := map[string][]int64{}
	for i := range 30 {
		for _, chat := range []string{"a", "b", "c", "d", "e"} {
			ev := emit(t, st, chat, i)
			want[chat] = append(want[chat], ev.Seq)
		}
	}
	// every failure mode answered a few times over before the recovery
	waitUntil(t, "20 failed requests", func() bool { return rc.n.Load() >= 20 })
	if n := len(rc.delivered()); n != 0 {
		t.Fatalf("%d delivered while failing", n)
	}
	recovered.Store(true)
	rc.waitFor(t, 150)
	// once all 150 are marked delivered nothing is left to send: any
	// duplicate would have been sent by now
	var sts []EndpointStatus
	waitUntil(t, "150 marked delivered", func() bool {
		sts, _ = m.Status(context.Background(), true, 10)
		return sts[0].Delivered == 150 && sts[0].Pending == 0
	})
	got := rc.delivered()
	if len(got) != 150 {
		t.Fatalf("received %d, want 150 (no duplicates after success)", len(got))
	}
	checkOrder(t, got, want)
	if sts[0].Failed != 0 || sts[0].Retries == 0 {
		t.Fatalf("status = %+v", sts)
	}
}

// A refusal (a 4xx other than 408 and 429) gives up at once: it is marked
// failed, listed, not retried on the next start, and sent again only when
// an operator asks. The chat's later events are not held behind it.
func TestRefusalGivesUpAtOnceAndRetryOnRequest(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if refuse.Load() && n == 1 {
			w.WriteHeader(http.StatusBadRequest)
			return true
		}
		return false
	})
	r := newRig(t)
	st := r.st
	ep := Endpoint{Name: "bridge", URL: rc.srv.URL, Secret: testSecret}
	m := r.startManager(t, Options{}, ep)
	first := emit(t, st, "alice", 1)
	second := emit(t, st, "alice", 2)
	got := rc.waitFor(t, 1)
	if got[0].seq != second.Seq {
		t.Fatalf("delivered %d, want the event after the refused one (%d)", got[0].seq, second.Seq)
	}
	if n := rc.n.Load(); n != 2 {
		t.Fatalf("%d requests: the refusal was retried", n)
	}
	sts, _ := m.Status(context.Background(), true, 10)
	if sts[0].Failed != 1 || len(sts[0].FailedDeliveries) != 1 || sts[0].FailedDeliveries[0].EventID != first.ID ||
		sts[0].GaveUp != 1 || !strings.Contains(sts[0].FailedDeliveries[0].Error, "400") {
		t.Fatalf("status = %+v", sts[0])
	}
	// The endpoint answered the next delivery: its last error is over
	// (the failed delivery keeps its own).
	waitUntil(t, "the last error cleared by the next delivery", func() bool {
		sts, _ := m.Status(context.Background(), false, 0)
		return sts[0].Delivered == 1 && sts[0].LastError == ""
	})
	// The delivered mark of the second event follows its answer by a
	// moment: a stop before it would rightly send it again (at least once).
	waitUntil(t, "the second event marked delivered", func() bool {
		sts, _ := m.Status(context.Background(), false, 0)
		return sts[0].Pending == 0
	})
	// A new manager (a restart) does not send the refused event again.
	m.Stop()
	m2 := r.startManager(t, Options{}, ep)
	// A later event of the same chat goes out after anything of the chat
	// still to send: once it is delivered, the refused one was not resent.
	third := emit(t, st, "alice", 3)
	if got = rc.waitFor(t, 2); got[1].seq != third.Seq {
		t.Fatalf("after a restart delivered %d, want the new event %d", got[1].seq, third.Seq)
	}
	if n := rc.n.Load(); n != 3 {
		t.Fatalf("%d requests after a restart: a refused delivery was sent again", n)
	}
	if _, err := m2.Retry(context.Background(), "nope"); err != ErrUnknownEndpoint {
		t.Fatalf("Retry(unknown) = %v", err)
	}
	refuse.Store(false)
	if n, err := m2.Retry(context.Background(), "bridge"); err != nil || n != 1 {
		t.Fatalf("Retry = %d, %v", n, err)
	}
	got = rc.waitFor(t, 3)
	if got[2].id != first.ID {
		t.Fatalf("retried delivery id %q, want %q", got[2].id, first.ID)
	}
	// The delivered mark is written just after the answer.
	waitUntil(t, "the retried delivery marked", func() bool {
		sts, _ := m2.Status(context.Background(), true, 10)
		return sts[0].Failed == 0 && sts[0].Pending == 0
	})
}

// A delivery that keeps failing past retry_for gives up and is listed.
func TestRetryForExpires(t *testing.T) {
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusBadGateway)
		return true
	})
	r := newRig(t)
	st := r.st
	m := r.startManager(t, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret, RetryFor: 150 * time.Millisecond})
	start := r.clk.Now()
	emit(t, st, "alice", 1)
	var sts []EndpointStatus
	waitUntil(t, "the delivery given up", func() bool {
		sts, _ = m.Status(context.Background(), true, 10)
		return sts[0].Failed == 1
	})
	d := sts[0].FailedDeliveries[0]
	if d.Attempts < 2 || d.Error == "" {
		t.Fatalf("failed delivery = %+v", d)
	}
	// given up at the first retry that would come after retry_for (on
	// the manager's clock, which the test drives: the backoff is at most
	// 40ms)
	if at, err := time.Parse(time.RFC3339, d.At); err != nil || at.Sub(start) > 150*time.Millisecond+time.Second {
		t.Fatalf("gave up at %s, first attempt after %s, retry_for 150ms (%v)", d.At, start, err)
	}
}

// 429 with Retry-After is honoured.
func TestRetryAfterHonoured(t *testing.T) {
	var first, second atomic.Int64
	var clk *clock.Fake
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if n == 2 {
			second.Store(int64(clk.Now().Sub(time.Unix(0, 0))))
		}
		if n == 1 {
			first.Store(int64(clk.Now().Sub(time.Unix(0, 0))))
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	r := newRig(t)
	clk = r.clk
	st := r.st
	r.startManager(t, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret})
	emit(t, st, "alice", 1)
	rc.waitFor(t, 1)
	if d := time.Duration(second.Load() - first.Load()); d < time.Second {
		t.Fatalf("retried %s after a 429 with Retry-After: 1", d)
	}
}

// A slow endpoint does not hold another endpoint back.
func TestSlowEndpointDoesNotSlowOthers(t *testing.T) {
	release := make(chan struct{})
	slow := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	fast := newReceiver(t, nil)
	r := newRig(t)
	st := r.st
	r.startManager(t, Options{Parallel: 2},
		Endpoint{Name: "slow", URL: slow.srv.URL, Secret: testSecret, Timeout: 10 * time.Second},
		Endpoint{Name: "fast", URL: fast.srv.URL, Secret: testSecret})
	for i := range 50 {
		emit(t, st, fmt.Sprintf("c%d", i%10), i)
	}
	// every delivery to the fast endpoint while the slow one holds its
	// two requests open
	fast.waitFor(t, 50)
	if n := len(slow.delivered()); n != 0 {
		t.Fatalf("the slow endpoint answered %d", n)
	}
	close(release)
}

// After a stop with deliveries outstanding (a crash stands in the same
// place: nothing is marked before the answer), a new manager sends every
// undelivered event with the same webhook-id.
func TestUndeliveredSentAgainWithSameID(t *testing.T) {
	// The endpoint is down for the first manager and up for the second:
	// two receivers behind one endpoint name, so that an attempt the
	// stop abandoned, reaching the receiver late, cannot count.
	var refused atomic.Int64
	down := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusServiceUnavailable)
		refused.Add(1)
		return true
	})
	rc := newReceiver(t, nil)
	r := newRig(t)
	st := r.st
	m := r.startManager(t, Options{}, Endpoint{Name: "bridge", URL: down.srv.URL, Secret: testSecret})
	var ids []string
	for i := range 10 {
		ids = append(ids, emit(t, st, "alice", i).ID)
	}
	// deliveries outstanding: at least one was tried (and failed)
	waitUntil(t, "a refused attempt", func() bool { return refused.Load() >= 1 })
	m.Stop()
	r.startManager(t, Options{}, Endpoint{Name: "bridge", URL: rc.srv.URL, Secret: testSecret})
	got := rc.waitFor(t, 10)
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.id)
	}
	if !slices.Equal(gotIDs, ids) {
		t.Fatalf("ids = %v, want %v", gotIDs, ids)
	}
}

// Subscriptions: an endpoint gets only its event types.
func TestSubscribedTypesOnly(t *testing.T) {
	rc := newReceiver(t, nil)
	r := newRig(t)
	st := r.st
	m := r.startManager(t, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret, Events: []events.Type{events.APIDown}})
	emit(t, st, "alice", 1)
	if _, err := st.AppendEvent(context.Background(), events.Event{Type: events.APIDown}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 1)
	// nothing left to send once the delivery is marked
	waitUntil(t, "nothing pending", func() bool {
		sts, _ := m.Status(context.Background(), false, 0)
		return sts[0].Pending == 0
	})
	if got := rc.delivered(); len(got) != 1 || got[0].typ != string(events.APIDown) {
		t.Fatalf("got %+v", got)
	}
}

// A manager stopped while a delivery is in flight and started again (a
// cluster node losing the webhooks role and gaining it back) delivers
// that event and every later one: 3 of 3 arrive, in order.
func TestRestartedWithDeliveryInFlight(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if n == 1 { // hold the first request until the manager gives it up
			inFlight <- struct{}{}
			<-r.Context().Done()
			return true
		}
		return false
	})
	r := newRig(t)
	m := r.newManager(t, Options{}, Endpoint{Name: "bridge", URL: rc.srv.URL, Secret: testSecret})
	m.Start()
	want := []int64{emit(t, r.st, "alice", 1).Seq}
	<-inFlight
	m.Stop()
	m.Start()
	t.Cleanup(m.Stop)
	for i := 2; i <= 3; i++ {
		want = append(want, emit(t, r.st, "alice", i).Seq)
	}
	got := rc.waitFor(t, 3)
	checkOrder(t, got, map[string][]int64{"alice": want})
	waitUntil(t, "nothing pending", func() bool {
		sts, _ := m.Status(context.Background(), false, 0)
		return sts[0].Pending == 0 && sts[0].Delivered == 3
	})
}
