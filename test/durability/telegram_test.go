package durability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// telegramDaemon starts the fake Telegram and the real daemon (echo agent)
// with a Telegram channel on it that allows users.
func telegramDaemon(t *testing.T, users ...int64) (*faketelegram.Server, *daemontest.Daemon) {
	t.Helper()
	return telegramDaemonWith(t, "", users...)
}

// telegramDaemonWith is telegramDaemon with more of the channel's keys
// (YAML lines indented for the channel's map, e.g. "    max_attachment: 1KiB").
func telegramDaemonWith(t *testing.T, keys string, users ...int64) (*faketelegram.Server, *daemontest.Daemon) {
	t.Helper()
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	tok := filepath.Join(t.TempDir(), "telegram.token")
	if err := os.WriteFile(tok, []byte(fake.Token()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allow := make([]string, len(users))
	for i, u := range users {
		allow[i] = fmt.Sprint(u)
	}
	d := daemontest.Start(t, daemontest.Options{
		Set: map[string]any{"agent.kind": "echo"},
		YAML: fmt.Sprintf(`
channels:
  - kind: telegram
    token_file: %s
    api_url: %s
    allow: [%s]
%s`, tok, fake.URL(), strings.Join(allow, ", "), keys),
	})
	return fake, d
}

func waitSent(t *testing.T, fake *faketelegram.Server, chat int64, cond func([]faketelegram.SentMessage) bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fake.WaitFor(ctx, func() bool { return cond(fake.Sent(chat)) }); err != nil {
		t.Fatalf("%s: chat %d got %+v", what, chat, fake.Sent(chat))
	}
}

// TestTelegramRoundTrip: a person's message reaches the agent through the
// daemon's Telegram channel and its reply comes back; a stranger is told
// their id and nothing is queued for them.
func TestTelegramRoundTrip(t *testing.T) {
	fake, d := telegramDaemon(t, 42)
	if _, err := fake.SendText(faketelegram.User{ID: 42, FirstName: "Ann"}, "hello from the pocket"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool {
		return len(s) == 1 && s[0].Text == "hello from the pocket"
	}, "the echo reply")
	// The in-chat commands: registered, /status answers, /new starts over.
	if cmds := fake.Commands("", ""); len(cmds) != 3 || cmds[0].Command != "new" || cmds[1].Command != "status" || cmds[2].Command != "stop" {
		t.Fatalf("commands registered: %+v", cmds)
	}
	if _, err := fake.SendText(faketelegram.User{ID: 42, FirstName: "Ann"}, "/status"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool {
		return len(s) == 2 && strings.Contains(s[1].Text, "healthy") && strings.Contains(s[1].Text, "1 turns")
	}, "the /status answer")
	if _, err := fake.SendText(faketelegram.User{ID: 42, FirstName: "Ann"}, "/new"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool {
		return len(s) == 3 && strings.Contains(s[2].Text, "clean conversation")
	}, "the /new answer")
	if _, err := fake.SendText(faketelegram.User{ID: 7, FirstName: "Eve"}, "me too"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 7, func(s []faketelegram.SentMessage) bool {
		return len(s) == 1 && strings.Contains(s[0].Text, "user id is 7")
	}, "the refusal")
	out, err := d.Cmd("channels", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "telegram") || !strings.Contains(string(out), "fake_dispatch_bot") {
		t.Fatalf("channels list: %v\n%s", err, out)
	}
	daemontest.WaitFor(t, func() bool {
		code, body := d.Get("/v1/channels")
		return code == 200 && strings.Contains(string(body), `"connected":true`) && strings.Contains(string(body), `"delivered":1`) &&
			strings.Contains(string(body), `"backlog":0`)
	}, 10*time.Second, "GET /v1/channels: connected, one delivered, nothing waiting")
	// Counted once each outcome is committed (just after the answers).
	daemontest.WaitFor(t, func() bool {
		return d.HasMetrics(
			`dispatch_channel_updates_total{channel="telegram",outcome="accepted"} 1`,
			`dispatch_channel_updates_total{channel="telegram",outcome="command"} 2`,
			`dispatch_channel_updates_total{channel="telegram",outcome="refused"} 1`,
			`dispatch_channel_deliveries_total{channel="telegram",result="delivered"} 1`,
			`dispatch_channel_connected{channel="telegram"} 1`,
		)
	}, 10*time.Second, "the channel's metrics")
	if st := d.Status(); st.Queue.Pending+st.Queue.Inflight+st.Queue.Done != 1 {
		t.Fatalf("messages %+v: want only Ann's", st.Queue)
	}
}

// TestTelegramKill9 kills the daemon twice while updates are being taken
// in and replies sent: in the end every update was accepted exactly once
// (its update_id is its message's client id), every message answered in
// its chat, in order; a reply sent twice is possible only in the window
// between Telegram accepting it and the commit that records it, and is
// counted.
func TestTelegramKill9(t *testing.T) {
	users := []int64{42, 43, 44, 45}
	fake, d := telegramDaemon(t, users...)
	const perUser = 12
	// People keep writing while the daemon is killed: a round's updates
	// arrive 10 ms apart, and the kill comes once a few replies went out,
	// with updates still arriving (intake) and replies still going
	// (delivery).
	sendRound := func(round int) {
		for i := range perUser / 2 {
			for _, u := range users {
				text := fmt.Sprintf("u%d-r%d-m%d", u, round, i)
				if _, err := fake.SendText(faketelegram.User{ID: u}, text); err != nil {
					t.Error(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	sent := func() int {
		n := 0
		for _, u := range users {
			n += len(fake.Sent(u))
		}
		return n
	}
	for round := range 2 {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sendRound(round) }()
		base := sent()
		daemontest.WaitFor(t, func() bool { return sent() > base+2 }, 30*time.Second, "replies under way")
		pending := len(fake.Pending())
		d.Kill9()
		t.Logf("round %d: killed with %d updates not yet confirmed", round, pending)
		d.Restart()
		wg.Wait()
	}
	// Every text answered, in order, in its chat.
	for _, u := range users {
		var want []string
		for round := range 2 {
			for i := range perUser / 2 {
				want = append(want, fmt.Sprintf("u%d-r%d-m%d", u, round, i))
			}
		}
		waitSent(t, fake, u, func(s []faketelegram.SentMessage) bool {
			var got []string
			for _, m := range s {
				got = append(got, strings.Split(m.Text, "\n")...)
			}
			return len(got) >= len(want) && strings.Contains(strings.Join(got, ","), want[len(want)-1])
		}, "every reply")
	}
	dups := 0
	for _, u := range users {
		seen := map[string]bool{}
		last := -1
		for _, m := range fake.Sent(u) {
			for _, line := range strings.Split(m.Text, "\n") {
				if seen[line] {
					dups++
					continue
				}
				seen[line] = true
				var uu, r, i int
				if _, err := fmt.Sscanf(line, "u%d-r%d-m%d", &uu, &r, &i); err != nil || uu != int(u) {
					t.Fatalf("chat %d got %q", u, line)
				}
				if k := r*perUser + i; k < last {
					t.Fatalf("chat %d: %q out of order", u, line)
				} else {
					last = k
				}
			}
		}
		if len(seen) != perUser {
			t.Fatalf("chat %d: %d distinct replies, want %d", u, len(seen), perUser)
		}
	}
	// At most one part per chat in flight at each kill can fall in the
	// window.
	t.Logf("replies sent twice (the documented window): %d", dups)
	if dups > 2*len(users) {
		t.Fatalf("%d replies sent twice: more than the parts in flight at two kills (%d)", dups, 2*len(users))
	}
	d.Term()
	// Exactly once in: one message per update, by client id.
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range users {
		ms, err := st.List(context.Background(), store.Filter{ChatID: fmt.Sprintf("tg:%d", u), State: store.Done})
		if err != nil {
			t.Fatal(err)
		}
		texts := map[string]int{}
		for _, m := range ms {
			texts[m.Text]++
		}
		if len(ms) != perUser || len(texts) != perUser {
			t.Fatalf("chat %d: %d messages stored (%d distinct) for %d updates", u, len(ms), len(texts), perUser)
		}
	}
}
