package telegram_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

// roleRig is a rig whose channel runs under a role with a deadline the
// test sets.
func roleRig(t *testing.T, reply func(string) string) (*rig, *atomic.Int64) {
	t.Helper()
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r := &rig{t: t, fake: fake, st: st, reply: reply, wake: make(chan string, 100)}
	var until atomic.Int64 // unix nanoseconds; 0: not held
	until.Store(time.Now().Add(time.Hour).UnixNano())
	ch, err := telegram.New(telegram.Config{
		Name: "telegram", Token: fake.Token(), APIURL: fake.URL(), Allow: []int64{42, 43},
		Store: st, Accepted: func(chat string) { r.wake <- chat }, PollTimeout: time.Second,
		Until: func() time.Time {
			if n := until.Load(); n != 0 {
				return time.Unix(0, n)
			}
			return time.Time{}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.ch = ch
	ch.Start()
	t.Cleanup(ch.Stop)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.agent(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r, &until
}

// Past its role's deadline a channel neither sends nor takes updates in:
// a reply waits in the outbox and an update stays unconfirmed at
// Telegram, for the node that holds the role next (here: the same one,
// once its role is renewed); nothing is lost or sent twice.
func TestNothingSentPastTheRoleDeadline(t *testing.T) {
	var (
		until *atomic.Int64
		lost  atomic.Bool
	)
	r, u := roleRig(t, func(s string) string {
		if !lost.Swap(true) {
			until.Store(time.Now().Add(-time.Second).UnixNano()) // lost while the first turn ran
		}
		return "echo: " + s
	})
	until = u
	r.waitSent(42, 0)
	r.send(faketelegram.Incoming{From: ann, Text: "first"})
	r.waitDelivered("tg:42", 0)
	// The reply was enqueued after the deadline: it stays pending.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(r.fake.Sent(42)); n != 0 {
			t.Fatalf("%d messages sent past the role's deadline", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An update that comes meanwhile is not taken in.
	r.send(faketelegram.Incoming{From: ann, Text: "second"})
	time.Sleep(1500 * time.Millisecond)
	if ms := r.messages("tg:42"); len(ms) != 1 {
		t.Fatalf("%d messages accepted past the role's deadline, want only the first", len(ms))
	}
	if len(r.fake.Pending()) != 1 {
		t.Fatalf("pending at Telegram: %+v, want the second update unconfirmed", r.fake.Pending())
	}
	// Renewed: the reply goes, once; the second update is taken in.
	until.Store(time.Now().Add(time.Hour).UnixNano())
	sent := r.waitSent(42, 2)
	if len(sent) != 2 || sent[0].Text != "echo: first" || sent[1].Text != "echo: second" {
		t.Fatalf("sent %+v", sent)
	}
	if ms := r.messages("tg:42"); len(ms) != 2 {
		t.Fatalf("%d messages accepted, want 2", len(ms))
	}
}

// A second poller of the same bot (another process with its token):
// Telegram ends the channel's long poll with 409 Conflict; the channel
// reports it (not connected, conflict) and backs off, and is connected
// again once the other poller is gone.
func TestSecondPollerIsAConflict(t *testing.T) {
	m := channel.NewMetrics(nil)
	r := newRig(t, echo, func(c *telegram.Config) { c.Metrics = m })
	waitStatus(t, r.ch, func(s telegram.Status) bool { return s.Connected }, "connected")
	waitPolling(t, r.fake)
	q := url.Values{"timeout": {"3"}}
	resp, err := http.PostForm(r.fake.URL()+"/bot"+r.fake.Token()+"/getUpdates", q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitStatus(t, r.ch, func(s telegram.Status) bool {
		return s.Conflict && !s.Connected && strings.Contains(s.Error, "another poller") && strings.Contains(s.Error, "409")
	}, "the conflict reported")
	if n := testutil.ToFloat64(m.Conflicts.WithLabelValues("telegram")); n < 1 {
		t.Fatalf("dispatch_channel_conflicts_total = %v, want at least 1", n)
	}
	waitStatus(t, r.ch, func(s telegram.Status) bool { return s.Connected && !s.Conflict && s.Error == "" }, "connected again")
}

func waitPolling(t *testing.T, fake *faketelegram.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !fake.Polling() {
		if time.Now().After(deadline) {
			t.Fatal("the channel is not long-polling")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, ch *telegram.Channel, cond func(telegram.Status) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(ch.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %+v", what, ch.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
