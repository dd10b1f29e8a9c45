package telegram_test

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

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// TestBenchTelegram measures the channel against the fake Bot API, on the
// real (SQLite) store, with an in-process agent that answers at once:
//
//   - update → agent: from the person's message entering the fake to the
//     agent claiming it (getUpdates answered, the accept committed with
//     the offset, the chat woken, the message claimed). The long poll's
//     wait is not in it: the fake answers a waiting getUpdates as soon
//     as an update arrives;
//   - reply → sendMessage: from the agent's reply (committed, then read
//     from the event feed by the outbox) to the fake receiving
//     sendMessage;
//   - 1,000 messages over 100 chats, sent at once: every reply arrives
//     exactly once, in order in its chat.
//
// Run it with
//
//	DISPATCH_BENCH=1 go test -run TestBenchTelegram -v ./internal/channel/telegram/
//
// DISPATCH_BENCH_ROUNDS sets the latency samples (default 300).
func TestBenchTelegram(t *testing.T) {
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
		first   = 1000 // the first chat's user id
	)
	var (
		mu      sync.Mutex
		claimed = map[string]time.Time{}
	)
	allow := []int64{42}
	for i := range chats {
		allow = append(allow, first+int64(i))
	}
	r := newRig(t, func(text string) string {
		now := time.Now()
		mu.Lock()
		claimed[text] = now
		mu.Unlock()
		return text
	}, func(c *telegram.Config) { c.Allow = allow; c.PollTimeout = 25 * time.Second })
	// Warm up: the outbox's cursor, the first poll, the first chat.
	r.send(faketelegram.Incoming{From: ann, Text: "warm-up"})
	r.waitSent(42, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var in, out []time.Duration
	for i := range rounds {
		text := fmt.Sprint("b", i)
		start := time.Now()
		r.send(faketelegram.Incoming{From: ann, Text: text})
		var op faketelegram.Op
		if err := r.fake.WaitFor(ctx, func() bool {
			ops := r.fake.Ops(42)
			for j := len(ops) - 1; j >= 0; j-- {
				if ops[j].Method == "sendMessage" && ops[j].Text == text {
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
	t.Logf("  update → agent:       p50 %s  p99 %s", pct(in, .5), pct(in, .99))
	t.Logf("  reply → sendMessage:  p50 %s  p99 %s", pct(out, .5), pct(out, .99))

	// 1,000 messages over 100 chats at once.
	start := time.Now()
	for m := range perChat {
		for c := range chats {
			u := faketelegram.User{ID: first + int64(c)}
			r.send(faketelegram.Incoming{From: u, Text: fmt.Sprintf("c%d-m%d", c, m)})
		}
	}
	if err := r.fake.WaitFor(ctx, func() bool {
		for c := range chats {
			if len(r.fake.Sent(first+int64(c))) < perChat {
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
		sent := r.fake.Sent(first + int64(c))
		var got []string
		for _, s := range sent {
			got = append(got, s.Text)
		}
		var want []string
		for m := range perChat {
			want = append(want, fmt.Sprintf("c%d-m%d", c, m))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("chat %d got %q, want %q", c, got, want)
		}
	}
	t.Logf("%d messages over %d chats: every reply once, in order, in %.2f s (%.0f messages/s)",
		chats*perChat, chats, took.Seconds(), float64(chats*perChat)/took.Seconds())
}
