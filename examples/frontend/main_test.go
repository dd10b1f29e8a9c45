package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// The example builds as a program.
func TestBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	out, err := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "frontend"), ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// The webhook receiver accepts what dispatch signs, once per webhook-id,
// and refuses a forgery.
func TestWebhookHandler(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("example secret of thirty-two b.."))
	key, _ := webhook.ParseSecret(secret)
	var out, logged bytes.Buffer
	h, err := NewWebhookHandler(secret, &out)
	if err != nil {
		t.Fatal(err)
	}
	h.Log = log.New(&logged, "", 0)
	body := []byte(`{"id":"evt-7","seq":7,"type":"reply","chat_id":"alice","turn_id":"turn-1","message_ids":["m1","m2"],"text":"hi both","at":"2026-01-01T00:00:00Z"}`)
	send := func(sig string) int {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		now := time.Now()
		req.Header.Set("webhook-id", "evt-7")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		if sig == "" {
			sig = webhook.Sign(key, "evt-7", now, body)
		}
		req.Header.Set("webhook-signature", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := send(""); c != 204 {
		t.Fatalf("signed delivery: %d", c)
	}
	if c := send(""); c != 204 {
		t.Fatalf("repeated delivery: %d", c)
	}
	if logged.Len() != 0 {
		t.Errorf("logged for good deliveries: %q", logged.String())
	}
	if c := send("v1,AAAA"); c != 401 {
		t.Fatalf("forged delivery: %d", c)
	}
	if got := logged.String(); !strings.Contains(got, `refused delivery "evt-7"`) || !strings.Contains(got, "no valid signature") || !strings.Contains(got, "-secret") {
		t.Errorf("a refused delivery logged %q", got)
	}
	if got := out.String(); got != "to alice: hi both\n" {
		t.Fatalf("delivered %q, want the reply once", got)
	}
}

// The follower gets replies from a real feed over HTTP, each once, and
// resumes from its cursor file.
func TestFollower(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(api.Handler(nil, feedOnly{Store: st}, nil, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for i := range 3 {
		if _, err := st.AppendEvent(context.Background(), events.Event{Type: events.Reply, ChatID: "alice", TurnID: fmt.Sprint("t", i), Text: fmt.Sprint("reply ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cursor := filepath.Join(t.TempDir(), "cursor")
	var out bytes.Buffer
	f := &Follower{Base: srv.URL, Cursor: cursor, Out: &out}
	if err := f.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "to alice: reply 0\nto alice: reply 1\nto alice: reply 2\n" {
		t.Fatalf("got %q", got)
	}
	// A new follower resumes after the cursor and waits for the next one.
	var out2 syncbuf.Buffer
	f2 := &Follower{Base: srv.URL, Cursor: cursor, Out: &out2}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f2.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	if _, err := st.AppendEvent(context.Background(), events.Event{Type: events.Reply, ChatID: "bob", Text: "later"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out2.String(), "later") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := out2.String(); got != "to bob: later\n" {
		t.Fatalf("resumed follower got %q", got)
	}
}

// feedOnly serves the event routes from a store (the rest of the API is
// not used by the example).
type feedOnly struct {
	*sqlite.Store
}

func (feedOnly) Webhooks(context.Context) ([]webhook.EndpointStatus, error) { return nil, nil }
func (feedOnly) RetryWebhook(context.Context, string) (int, error)          { return 0, nil }
func (feedOnly) Channels(context.Context) ([]wire.ChannelStatus, error)     { return nil, nil }

// TestDeliverPermissionEvents: the person sees what the agent asks to run
// and what was decided, not a bare event type.
func TestDeliverPermissionEvents(t *testing.T) {
	var b strings.Builder
	deliver(&b, Event{Type: "permission_request", ChatID: "bob", RequestID: "r1", Tool: "Bash", Summary: "touch x"})
	deliver(&b, Event{Type: "permission_decided", ChatID: "bob", RequestID: "r1", Tool: "Bash", Decision: "allow", By: "cli:root"})
	want := "to bob: (the assistant asks to run Bash: touch x; request r1)\nto bob: (Bash: allow by cli:root)\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
