package slack_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/slack"
	"github.com/dispatchd/dispatch/internal/fakeslack"
)

// TestBenchSlack measures the channel against the fake Slack, on the real
// (SQLite) store, with an in-process agent that answers at once:
//
//   - event → agent: from the person's message entering the fake to the
//     agent claiming it (the envelope written to the Socket Mode
//     connection, read by slack-go, the accept committed, the chat
//     woken, the message claimed);
//   - reply → chat.postMessage: from the agent's reply (committed, then
//     read from the event feed by the outbox) to the fake receiving
//     chat.postMessage (the turn's reaction is taken off first: one
//     reactions.remove call is in it);
//   - 1,000 messages over 100 chats (channels, each message a mention),
//     sent at once: every message is taken in once and every reply
//     arrives exactly once, in its chat in the order the messages were
//     taken in.
//
// Run it with
//
//	DISPATCH_BENCH=1 go test -run TestBenchSlack -v ./internal/channel/slack/
//
// DISPATCH_BENCH_ROUNDS sets the latency samples (default 300).
func TestBenchSlack(t *testing.T) {
	if os.Getenv("DISPATCH_BENCH") != "1" {
		t.Skip("benchmark: set DISPATCH_BENCH=1 to run it")
	}
	rounds := 300
	if n, err := strconv.Atoi(os.Getenv("DISPATCH_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	const (
		chats   = 100
		perChat = 10
	)
	var (
		mu      sync.Mutex
		claimed = map[string]time.Time{}
	)
	r := newRig(t, func(text string) string {
		now := time.Now()
		mu.Lock()
		claimed[text] = now
		mu.Unlock()
		return text
	}, fakeslack.WithAckTimeout(10*time.Second))
	// Warm up: the outbox's cursor, the connection, the first chat.
	dm := r.post(fakeslack.Incoming{User: ann, Text: "warm-up"}).Channel
	r.botMessages(dm, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var in, out []time.Duration
	for i := range rounds {
		text := fmt.Sprint("b", i)
		start := time.Now()
		r.post(fakeslack.Incoming{User: ann, Text: text})
		var op fakeslack.Op
		if err := r.fake.WaitFor(ctx, func() bool {
			ops := r.fake.Ops(dm)
			for j := len(ops) - 1; j >= 0; j-- {
				if ops[j].Method == "chat.postMessage" && ops[j].Text == text {
					op = ops[j]
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("round %d: no reply", i)
		}
		mu.Lock()
		at := claimed[text]
		mu.Unlock()
		in = append(in, at.Sub(start))
		out = append(out, op.Time.Sub(at))
	}
	pct := func(ds []time.Duration, q float64) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		d := s[min(len(s)-1, max(0, int(q*float64(len(s))+0.5)-1))]
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
	t.Logf("latency, %d messages one at a time:", rounds)
	t.Logf("  event → agent:             p50 %s  p99 %s", pct(in, .5), pct(in, .99))
	t.Logf("  reply → chat.postMessage:  p50 %s  p99 %s", pct(out, .5), pct(out, .99))

	// 1,000 messages over 100 chats at once.
	channel := func(c int) string { return fmt.Sprintf("C0B%03d", c) }
	start := time.Now()
	for m := range perChat {
		for c := range chats {
			r.post(fakeslack.Incoming{User: ann, Channel: channel(c), Text: fmt.Sprintf("c%d-m%d", c, m), Mention: true})
		}
	}
	if err := r.fake.WaitFor(ctx, func() bool {
		for c := range chats {
			if len(r.fake.BotMessages(channel(c))) < perChat {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal("not every reply arrived")
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // a reply sent twice would show now
	for c := range chats {
		var got []string
		for _, s := range r.fake.BotMessages(channel(c)) {
			got = append(got, s.Text)
		}
		// Slack does not promise to deliver events in the order they
		// happened (the fake writes each envelope on its own, so two
		// messages posted at once may swap): a chat's replies come in
		// the order the channel took its messages in, each once.
		var accepted, want []string
		for _, m := range r.messages(slack.ChatID(r.fake.TeamID(), channel(c))) {
			accepted = append(accepted, m.Text)
		}
		for m := range perChat {
			want = append(want, fmt.Sprintf("c%d-m%d", c, m))
		}
		if sorted := slices.Sorted(slices.Values(accepted)); strings.Join(sorted, ",") != strings.Join(slices.Sorted(slices.Values(want)), ",") {
			t.Fatalf("chat %d took in %q, want each of %q once", c, accepted, want)
		}
		if strings.Join(got, ",") != strings.Join(accepted, ",") {
			t.Fatalf("chat %d got %q, want %q (the order taken in)", c, got, accepted)
		}
	}
	t.Logf("%d messages over %d chats: every reply once, in order, in %.2f s (%.0f messages/s)",
		chats*perChat, chats, took.Seconds(), float64(chats*perChat)/took.Seconds())
}
