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

func (rc *receiver) waitFor(t *testing.T, n int, within time.Duration) []received {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := rc.delivered()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d deliveries, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUntil polls cond (real time, bounded): the deliveries run on their
// own goroutines and say what they did only through state this can see.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "d.db")
	}
	st, err := sqlite.Open(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func startManager(t *testing.T, st *sqlite.Store, opt Options, eps ...Endpoint) *Manager {
	t.Helper()
	if opt.BackoffInitial == 0 {
		opt.BackoffInitial = 10 * time.Millisecond
		opt.BackoffMax = 40 * time.Millisecond
	}
	m, err := New(st, eps, opt)
	if err != nil {
		t.Fatal(err)
	}
	st.SetWebhookFanout(m.Fanout)
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
	st := openStore(t, "")
	startManager(t, st, Options{}, Endpoint{URL: rc.srv.URL + "/hook", Secret: testSecret})
	ev := emit(t, st, "alice", 1)
	got := rc.waitFor(t, 1, 5*time.Second)[0]
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
	st := openStore(t, "")
	m := startManager(t, st, Options{Parallel: 4}, Endpoint{URL: rc.srv.URL, Secret: testSecret})
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
	rc.waitFor(t, 150, 20*time.Second)
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
	path := filepath.Join(t.TempDir(), "d.db")
	st := openStore(t, path)
	ep := Endpoint{Name: "bridge", URL: rc.srv.URL, Secret: testSecret}
	m := startManager(t, st, Options{}, ep)
	first := emit(t, st, "alice", 1)
	second := emit(t, st, "alice", 2)
	got := rc.waitFor(t, 1, 5*time.Second)
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
	m2 := startManager(t, st, Options{}, ep)
	// A later event of the same chat goes out after anything of the chat
	// still to send: once it is delivered, the refused one was not resent.
	third := emit(t, st, "alice", 3)
	if got = rc.waitFor(t, 2, 5*time.Second); got[1].seq != third.Seq {
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
	got = rc.waitFor(t, 3, 5*time.Second)
	if got[2].id != first.ID {
		t.Fatalf("retried delivery id %q, want %q", got[2].id, first.ID)
	}
	// The delivered mark is written just after the answer.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sts, _ := m2.Status(context.Background(), true, 10)
		if sts[0].Failed == 0 && sts[0].Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after retry: %+v", sts[0])
		}
	}
}

// A delivery that keeps failing past retry_for gives up and is listed.
func TestRetryForExpires(t *testing.T) {
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusBadGateway)
		return true
	})
	st := openStore(t, "")
	m := startManager(t, st, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret, RetryFor: 150 * time.Millisecond})
	emit(t, st, "alice", 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		sts, _ := m.Status(context.Background(), true, 10)
		if sts[0].Failed == 1 {
			d := sts[0].FailedDeliveries[0]
			if d.Attempts < 2 || d.Error == "" {
				t.Fatalf("failed delivery = %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not given up: %+v", sts[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// 429 with Retry-After is honoured.
func TestRetryAfterHonoured(t *testing.T) {
	var first time.Time
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if n == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	})
	st := openStore(t, "")
	startManager(t, st, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret})
	emit(t, st, "alice", 1)
	rc.waitFor(t, 1, 5*time.Second)
	if d := time.Since(first); d < 900*time.Millisecond {
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
	st := openStore(t, "")
	startManager(t, st, Options{Parallel: 2},
		Endpoint{Name: "slow", URL: slow.srv.URL, Secret: testSecret, Timeout: 10 * time.Second},
		Endpoint{Name: "fast", URL: fast.srv.URL, Secret: testSecret})
	start := time.Now()
	for i := range 50 {
		emit(t, st, fmt.Sprintf("c%d", i%10), i)
	}
	fast.waitFor(t, 50, 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the fast endpoint took %s", d)
	}
	close(release)
}

// After a stop with deliveries outstanding (a crash stands in the same
// place: nothing is marked before the answer), a new manager sends every
// undelivered event with the same webhook-id.
func TestUndeliveredSentAgainWithSameID(t *testing.T) {
	var up atomic.Bool
	var refused atomic.Int64
	rc := newReceiver(t, func(n int64, r *http.Request, w http.ResponseWriter) bool {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			refused.Add(1)
			return true
		}
		return false
	})
	path := filepath.Join(t.TempDir(), "d.db")
	st := openStore(t, path)
	ep := Endpoint{Name: "bridge", URL: rc.srv.URL, Secret: testSecret}
	m := startManager(t, st, Options{}, ep)
	var ids []string
	for i := range 10 {
		ids = append(ids, emit(t, st, "alice", i).ID)
	}
	// deliveries outstanding: at least one was tried (and failed)
	waitUntil(t, "a refused attempt", func() bool { return refused.Load() >= 1 })
	m.Stop()
	up.Store(true)
	startManager(t, st, Options{}, ep)
	got := rc.waitFor(t, 10, 5*time.Second)
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
	st := openStore(t, "")
	m := startManager(t, st, Options{}, Endpoint{URL: rc.srv.URL, Secret: testSecret, Events: []events.Type{events.APIDown}})
	emit(t, st, "alice", 1)
	if _, err := st.AppendEvent(context.Background(), events.Event{Type: events.APIDown}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, 1, 5*time.Second)
	// nothing left to send once the delivery is marked
	waitUntil(t, "nothing pending", func() bool {
		sts, _ := m.Status(context.Background(), false, 0)
		return sts[0].Pending == 0
	})
	if got := rc.delivered(); len(got) != 1 || got[0].typ != string(events.APIDown) {
		t.Fatalf("got %+v", got)
	}
}
