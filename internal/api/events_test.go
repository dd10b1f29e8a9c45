package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// feedBackend is the test backend with a real store's event feed.
type feedBackend struct {
	*backend
	*sqlite.Store
	retried string
	// watched gets a signal (if there is room) each time a reader takes
	// the feed's mark: from then on any event committed wakes or answers
	// that reader, so a test can commit one knowing the reader waits.
	watched chan struct{}
}

func (b *feedBackend) EventsVisible() (int64, <-chan struct{}) {
	v, changed := b.Store.EventsVisible()
	select {
	case b.watched <- struct{}{}:
	default:
	}
	return v, changed
}

// Channels: no chat-app channels.
func (b *feedBackend) Channels(context.Context) ([]wire.ChannelStatus, error) { return nil, nil }

// The schedule routes are the test backend's: the store has methods of
// those names of its own.
func (b *feedBackend) Schedules(ctx context.Context, chat string) ([]wire.Schedule, error) {
	return b.backend.Schedules(ctx, chat)
}
func (b *feedBackend) Schedule(ctx context.Context, id string) (wire.Schedule, error) {
	return b.backend.Schedule(ctx, id)
}
func (b *feedBackend) AddSchedule(ctx context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	return b.backend.AddSchedule(ctx, in)
}
func (b *feedBackend) RemoveSchedule(ctx context.Context, id string) error {
	return b.backend.RemoveSchedule(ctx, id)
}
func (b *feedBackend) PauseSchedule(ctx context.Context, id string, paused bool) (wire.Schedule, error) {
	return b.backend.PauseSchedule(ctx, id, paused)
}

// watching empties watched: the next signal is a new reader's.
func (b *feedBackend) watching() {
	for {
		select {
		case <-b.watched:
		default:
			return
		}
	}
}

// waitWatched waits for a reader to take the feed's mark.
func (b *feedBackend) waitWatched(t *testing.T) {
	t.Helper()
	select {
	case <-b.watched:
	case <-time.After(10 * time.Second):
		t.Fatal("no reader took the feed's mark")
	}
}

func (b *feedBackend) Webhooks(context.Context) ([]webhook.EndpointStatus, error) {
	return []webhook.EndpointStatus{{Name: "bridge", URL: "https://bridge.example/hook", Failed: 1}}, nil
}

func (b *feedBackend) RetryWebhook(_ context.Context, name string) (int, error) {
	if name != "bridge" {
		return 0, webhook.ErrUnknownEndpoint
	}
	b.retried = name
	return 1, nil
}

func newFeedServer(t *testing.T, clk clock.Clock) (*httptest.Server, *feedBackend) {
	t.Helper()
	if clk == nil {
		clk = clock.Real{}
	}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := &feedBackend{backend: &backend{}, Store: st, watched: make(chan struct{}, 1)}
	srv := httptest.NewServer(Handler(b, b, nil, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv, b
}

// reply completes one turn of chat with the given messages.
func reply(t *testing.T, st *sqlite.Store, chat, text string, msgs ...string) {
	t.Helper()
	ctx := context.Background()
	for _, m := range msgs {
		if _, _, err := st.Accept(ctx, chat, m, ""); err != nil {
			t.Fatal(err)
		}
	}
	batch, _, err := st.Claim(ctx, chat, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range batch {
		ids = append(ids, m.ID)
	}
	if err := st.CompleteTurn(ctx, ids, text, store.SessionRecord{ChatID: chat}); err != nil {
		t.Fatal(err)
	}
}

func getEvents(t *testing.T, url string) (int, EventsOut, GoneOut) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out EventsOut
	var gone GoneOut
	if resp.StatusCode == http.StatusGone {
		_ = json.Unmarshal(data, &gone)
	} else {
		_ = json.Unmarshal(data, &out)
	}
	return resp.StatusCode, out, gone
}

// A waiting long poll is answered within milliseconds of the reply's
// commit, with one reply for the turn however many messages it answered.
func TestLongPollWakesOnReply(t *testing.T) {
	srv, b := newFeedServer(t, nil)
	type res struct {
		code int
		out  EventsOut
		at   time.Time
	}
	got := make(chan res, 1)
	b.watching()
	go func() {
		code, out, _ := getEvents(t, srv.URL+"/v1/events?after=0&wait=30s")
		got <- res{code, out, time.Now()}
	}()
	b.waitWatched(t) // the poll found nothing and waits
	reply(t, b.Store, "alice", "hello both", "one", "two")
	committed := time.Now()
	select {
	case r := <-got:
		if r.code != 200 || len(r.out.Events) != 1 {
			t.Fatalf("long poll: %d %+v", r.code, r.out)
		}
		e := r.out.Events[0]
		if e.Type != events.Reply || len(e.MessageIDs) != 2 || e.TurnID == "" || r.out.Next != e.Seq {
			t.Fatalf("event = %+v", e)
		}
		if d := r.at.Sub(committed); d > 200*time.Millisecond {
			t.Fatalf("long poll answered %s after the commit", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not woken by the reply")
	}
}

func TestLongPollTimesOutEmptyAndFilters(t *testing.T) {
	srv, b := newFeedServer(t, nil)
	reply(t, b.Store, "alice", "hi alice", "m")
	start := time.Now()
	code, out, _ := getEvents(t, srv.URL+"/v1/events?after=1&wait=300ms")
	if code != 200 || len(out.Events) != 0 || out.Next != 1 {
		t.Fatalf("empty poll: %d %+v", code, out)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("returned after %s, before the wait", d)
	}
	// Another chat's event wakes the poll but does not answer it.
	b.watching()
	go func() {
		select { // the poll waits (without it, the reply comes first: same answer)
		case <-b.watched:
		case <-time.After(10 * time.Second):
		}
		reply(t, b.Store, "bob", "hi bob", "m2")
	}()
	code, out, _ = getEvents(t, srv.URL+"/v1/events?chat=alice&after=1&wait=400ms")
	if code != 200 || len(out.Events) != 0 {
		t.Fatalf("chat filter: %d %+v", code, out)
	}
	code, out, _ = getEvents(t, srv.URL+"/v1/events?types=reply&chat=bob")
	if code != 200 || len(out.Events) != 1 || out.Events[0].ChatID != "bob" {
		t.Fatalf("types+chat: %d %+v", code, out)
	}
	for _, bad := range []string{"after=x", "limit=0", "limit=1001", "wait=61s", "wait=-1", "types=nope", "chat=%20x"} {
		if code, _, _ := getEvents(t, srv.URL+"/v1/events?"+bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ id, event, data string }

// readSSE reads events (and counts comments) from a stream until n events
// came or the stream ends.
func readSSE(t *testing.T, rd *bufio.Reader, n int, comments *int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	for len(out) < n {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d events: %v", len(out), err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if cur != (sseEvent{}) {
				out = append(out, cur)
				cur = sseEvent{}
			}
		case strings.HasPrefix(line, ":"):
			if comments != nil {
				*comments++
			}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

func openStream(t *testing.T, url, lastID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

// SSE: id = seq, event = type, data = the event JSON; live events follow
// the backlog; Last-Event-ID resumes after it; an idle stream gets
// keep-alive comments.
func TestSSEFramingResumeAndKeepAlive(t *testing.T) {
	old := KeepAlive
	KeepAlive = 100 * time.Millisecond
	t.Cleanup(func() { KeepAlive = old })
	srv, b := newFeedServer(t, nil)
	reply(t, b.Store, "alice", "first", "m1")
	reply(t, b.Store, "alice", "second", "m2")
	resp, rd := openStream(t, srv.URL+"/v1/events", "")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	got := readSSE(t, rd, 2, nil)
	reply(t, b.Store, "alice", "third", "m3") // live, after the backlog
	got = append(got, readSSE(t, rd, 1, nil)...)
	for i, e := range got {
		var ev events.Event
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatal(err)
		}
		if e.event != "reply" || e.id != fmt.Sprint(ev.Seq) || ev.Text != []string{"first", "second", "third"}[i] {
			t.Fatalf("event %d = %+v (%+v)", i, e, ev)
		}
	}
	// an idle stream gets a keep-alive comment each interval: read two
	// (the guard ends the stream only if they never come)
	guard := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	for comments := 0; comments < 2; {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d keep-alive comments at a 100ms interval: %v", comments, err)
		}
		if strings.HasPrefix(line, ": keep-alive") {
			comments++
		}
	}
	guard.Stop()
	resp.Body.Close()
	// Resume after the first event: the second and third come, in order.
	_, rd = openStream(t, srv.URL+"/v1/events", got[0].id)
	again := readSSE(t, rd, 2, nil)
	if again[0].id != got[1].id || again[1].id != got[2].id {
		t.Fatalf("resumed stream = %+v, want ids %s, %s", again, got[1].id, got[2].id)
	}
}

// A keep-alive comment never repeats the events sent before it.
func TestKeepAliveSendsNothingTwice(t *testing.T) {
	old := KeepAlive
	KeepAlive = 30 * time.Millisecond
	t.Cleanup(func() { KeepAlive = old })
	srv, b := newFeedServer(t, nil)
	reply(t, b.Store, "alice", "once", "m1")
	resp, rd := openStream(t, srv.URL+"/v1/events", "")
	readSSE(t, rd, 1, nil)
	time.AfterFunc(300*time.Millisecond, func() { resp.Body.Close() })
	comments := 0
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, ": keep-alive") {
			comments++
		}
		if strings.HasPrefix(line, "id: ") {
			t.Fatalf("an event came again after %d keep-alive comments: %q", comments, line)
		}
	}
	if comments < 2 {
		t.Fatalf("%d keep-alive comments", comments)
	}
}

// tail=N gives the last N events, as JSON and as the start of a stream
// that then follows the feed; it goes without after and limit.
func TestTail(t *testing.T) {
	srv, b := newFeedServer(t, nil)
	for i, text := range []string{"one", "two", "three"} {
		reply(t, b.Store, "alice", text, fmt.Sprintf("m%d", i))
	}
	code, out, _ := getEvents(t, srv.URL+"/v1/events?tail=2")
	if code != 200 || len(out.Events) != 2 || out.Events[0].Text != "two" || out.Events[1].Text != "three" || out.Next != out.Events[1].Seq {
		t.Fatalf("tail=2: %d %+v", code, out)
	}
	for _, q := range []string{"tail=0", "tail=1001", "tail=x", "tail=2&after=1", "tail=2&limit=5"} {
		if code, _, _ := getEvents(t, srv.URL+"/v1/events?"+q); code != 400 {
			t.Errorf("%s: HTTP %d, want 400", q, code)
		}
	}
	_, rd := openStream(t, srv.URL+"/v1/events?tail=1", "")
	got := readSSE(t, rd, 1, nil)
	reply(t, b.Store, "alice", "four", "m4")
	got = append(got, readSSE(t, rd, 1, nil)...)
	var texts []string
	for _, e := range got {
		var ev events.Event
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, ev.Text)
	}
	if strings.Join(texts, ",") != "three,four" {
		t.Fatalf("stream with tail=1: %q, want three then the live four", texts)
	}
}

// A position older than the oldest kept event is 410 with the oldest
// seq, for the JSON feed and the stream alike; never a silent gap.
func TestGoneAfterRetention(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	srv, b := newFeedServer(t, clk)
	reply(t, b.Store, "alice", "old", "m1")
	reply(t, b.Store, "alice", "old too", "m2")
	clk.Advance(8 * 24 * time.Hour)
	reply(t, b.Store, "alice", "new", "m3")
	if n, err := b.Store.PurgeEvents(context.Background(), clk.Now().Add(-7*24*time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	code, _, gone := getEvents(t, srv.URL+"/v1/events?after=1")
	if code != http.StatusGone || gone.Oldest != 3 || gone.Error == "" {
		t.Fatalf("after=1: %d %+v", code, gone)
	}
	resp, _ := openStream(t, srv.URL+"/v1/events", "evt-1")
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("stream from 1: %d", resp.StatusCode)
	}
	code, out, _ := getEvents(t, srv.URL+"/v1/events?after=2")
	if code != 200 || len(out.Events) != 1 || out.Events[0].Text != "new" {
		t.Fatalf("after=2: %d %+v", code, out)
	}
	code, out, _ = getEvents(t, srv.URL+"/v1/events")
	if code != 200 || len(out.Events) != 1 {
		t.Fatalf("from the oldest: %d %+v", code, out)
	}
}

func TestWebhookRoutes(t *testing.T) {
	srv, b := newFeedServer(t, nil)
	resp, err := http.Get(srv.URL + "/v1/webhooks")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(data), `"name":"bridge"`) {
		t.Fatalf("GET /v1/webhooks: %d %s", resp.StatusCode, data)
	}
	post := func(body string) int {
		resp, err := http.Post(srv.URL+"/v1/webhooks/retry", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(`{"endpoint":"bridge"}`); c != 200 || b.retried != "bridge" {
		t.Fatalf("retry: %d", c)
	}
	if c := post(`{"endpoint":"other"}`); c != 404 {
		t.Fatalf("retry unknown: %d", c)
	}
	if c := post(`{}`); c != 400 {
		t.Fatalf("retry without endpoint: %d", c)
	}
}
