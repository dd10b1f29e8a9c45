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
	"github.com/dispatchd/dispatch/internal/fakeslack"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// slackDaemon starts the fake Slack and the real daemon (echo agent) with
// a Slack channel on it that allows users.
func slackDaemon(t *testing.T, users ...string) (*fakeslack.Server, *daemontest.Daemon) {
	t.Helper()
	return slackDaemonWith(t, "", users...)
}

// slackDaemonWith is slackDaemon with extra lines (indented four spaces)
// in the channel's configuration.
func slackDaemonWith(t *testing.T, extra string, users ...string) (*fakeslack.Server, *daemontest.Daemon) {
	t.Helper()
	// Slack's own acknowledgement timeout (3 s) and retries: an envelope
	// lost with a killed daemon comes again on its next connection.
	fake := fakeslack.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	dir := t.TempDir()
	bot, app := filepath.Join(dir, "slack-bot.token"), filepath.Join(dir, "slack-app.token")
	for f, tok := range map[string]string{bot: fake.BotToken(), app: fake.AppToken()} {
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := daemontest.Start(t, daemontest.Options{
		Set: map[string]any{"agent.kind": "echo"},
		YAML: fmt.Sprintf(`
channels:
  - kind: slack
    bot_token_file: %s
    app_token_file: %s
    api_url: %s
    allow: [%s]
%s`, bot, app, fake.APIURL(), strings.Join(users, ", "), extra),
	})
	return fake, d
}

func waitBot(t *testing.T, fake *fakeslack.Server, channel string, cond func([]fakeslack.Message) bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fake.WaitFor(ctx, func() bool { return cond(fake.BotMessages(channel)) }); err != nil {
		t.Fatalf("%s: %s got %+v", what, channel, fake.BotMessages(channel))
	}
}

// TestSlackRoundTrip: a person's direct message and a mention in a channel
// reach the agent through the daemon's Slack channel and the replies come
// back (the channel's in a thread); /status answers; a stranger is told
// their id and nothing is queued for them.
func TestSlackRoundTrip(t *testing.T) {
	fake, d := slackDaemon(t, "U0ANN")
	p, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Text: "hello from slack"})
	if err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool {
		return len(s) == 1 && s[0].Text == "hello from slack"
	}, "the echo reply")
	m, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Channel: "C0TEAM", Text: "in the channel", Mention: true})
	if err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, "C0TEAM", func(s []fakeslack.Message) bool {
		return len(s) == 1 && s[0].Text == "in the channel" && s[0].ThreadTS == m.TS
	}, "the reply in a thread")
	if _, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Text: "/status"}); err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool {
		return len(s) == 2 && strings.Contains(s[1].Text, "healthy") && strings.Contains(s[1].Text, "1 turns")
	}, "the /status answer")
	if _, err := fake.Post(fakeslack.Incoming{User: "U0EVE", Text: "me too"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eveDM := fake.DMChannel("U0EVE")
	if err := fake.WaitFor(ctx, func() bool { return len(fake.Ephemerals(eveDM)) == 1 }); err != nil {
		t.Fatalf("refusal: %+v", fake.Ephemerals(eveDM))
	}
	if e := fake.Ephemerals(eveDM)[0]; !strings.Contains(e.Text, "U0EVE") {
		t.Fatalf("refusal %q", e.Text)
	}
	out, err := d.Cmd("channels", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "slack") {
		t.Fatalf("channels list: %v\n%s", err, out)
	}
	daemontest.WaitFor(t, func() bool {
		code, body := d.Get("/v1/channels")
		return code == 200 && strings.Contains(string(body), `"connected":true`) && strings.Contains(string(body), `"delivered":2`) &&
			strings.Contains(string(body), `"kind":"slack"`)
	}, 10*time.Second, "GET /v1/channels: connected, two delivered")
	daemontest.WaitFor(t, func() bool {
		return d.HasMetrics(
			`dispatch_channel_updates_total{channel="slack",outcome="accepted"} 2`,
			`dispatch_channel_updates_total{channel="slack",outcome="command"} 1`,
			`dispatch_channel_updates_total{channel="slack",outcome="refused"} 1`,
			`dispatch_channel_deliveries_total{channel="slack",result="delivered"} 2`,
			`dispatch_channel_connected{channel="slack"} 1`,
		)
	}, 10*time.Second, "the channel's metrics")
	if st := d.Status(); st.Queue.Pending+st.Queue.Inflight+st.Queue.Done != 2 {
		t.Fatalf("messages %+v: want only Ann's two", st.Queue)
	}
}

// TestSlackKill9 kills the daemon twice while messages are being taken in
// and replies sent: in the end every message was accepted exactly once
// (Slack sends an envelope that was not acknowledged again, and its ts is
// its message's client id), every message answered in its chat; a reply
// sent twice is possible only in the window between Slack accepting it
// and the commit that records it, and is counted.
func TestSlackKill9(t *testing.T) {
	users := []string{"U0A", "U0B", "U0C", "U0D"}
	fake, d := slackDaemon(t, users...)
	const perUser = 12
	sendRound := func(round int) {
		for i := range perUser / 2 {
			for _, u := range users {
				text := fmt.Sprintf("%s-r%d-m%d", u, round, i)
				if _, err := fake.Post(fakeslack.Incoming{User: u, Text: text}); err != nil {
					t.Error(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	sent := func() int {
		n := 0
		for _, u := range users {
			n += len(fake.BotMessages(fake.DMChannel(u)))
		}
		return n
	}
	for round := range 2 {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sendRound(round) }()
		base := sent()
		daemontest.WaitFor(t, func() bool { return sent() > base+2 }, 30*time.Second, "replies under way")
		unacked := 0
		for _, e := range fake.Envelopes() {
			if !e.Acked {
				unacked++
			}
		}
		d.Kill9()
		t.Logf("round %d: killed with %d envelopes not acknowledged", round, unacked)
		d.Restart()
		wg.Wait()
	}
	for _, e := range fake.Envelopes() {
		if e.GaveUp {
			t.Errorf("envelope %s (event %s) was never acknowledged, after %d deliveries", e.ID, e.EventID, e.Deliveries)
		}
	}
	// A message whose envelope was lost with the daemon comes again after
	// Slack's timeout, so its answer may come after later ones.
	for _, u := range users {
		waitBot(t, fake, fake.DMChannel(u), func(s []fakeslack.Message) bool {
			seen := map[string]bool{}
			for _, m := range s {
				for _, line := range strings.Split(m.Text, "\n") {
					seen[line] = true
				}
			}
			return len(seen) >= perUser
		}, "every reply")
	}
	dups := 0
	for _, u := range users {
		seen := map[string]bool{}
		for _, m := range fake.BotMessages(fake.DMChannel(u)) {
			for _, line := range strings.Split(m.Text, "\n") {
				if seen[line] {
					dups++
					continue
				}
				if !strings.HasPrefix(line, u+"-r") {
					t.Fatalf("chat %s got %q", u, line)
				}
				seen[line] = true
			}
		}
		if len(seen) != perUser {
			t.Fatalf("chat %s: %d distinct replies, want %d", u, len(seen), perUser)
		}
	}
	t.Logf("replies sent twice (the documented window): %d", dups)
	if dups > 2*len(users) {
		t.Fatalf("%d replies sent twice: more than the parts in flight at two kills (%d)", dups, 2*len(users))
	}
	d.Term()
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range users {
		ms, err := st.List(context.Background(), store.Filter{ChatID: "slack:" + fake.TeamID() + ":" + fake.DMChannel(u), State: store.Done})
		if err != nil {
			t.Fatal(err)
		}
		texts := map[string]int{}
		for _, m := range ms {
			texts[m.Text]++
		}
		if len(ms) != perUser || len(texts) != perUser {
			t.Fatalf("chat %s: %d messages stored (%d distinct) for %d sent", u, len(ms), len(texts), perUser)
		}
	}
}
