package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/fakeslack"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
	"github.com/dispatchd/dispatch/internal/wire"
)

// slackNodes starts the fake Slack and n nodes on one database, each with
// the same Slack channel (its own copies of the two token files).
func slackNodes(t *testing.T, n int, users []string) (*fakeslack.Server, []*daemontest.Daemon) {
	t.Helper()
	fake := fakeslack.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	dsn := pgtest.NewDatabase(t)
	var ds []*daemontest.Daemon
	for i := range n {
		dir := t.TempDir()
		bot, app := filepath.Join(dir, "slack-bot.token"), filepath.Join(dir, "slack-app.token")
		for f, tok := range map[string]string{bot: fake.BotToken(), app: fake.AppToken()} {
			if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		o := nodeOpts(dsn, i, map[string]any{"agent.kind": "echo"})
		o.YAML = fmt.Sprintf(`
channels:
  - name: slack
    kind: slack
    bot_token_file: %s
    app_token_file: %s
    api_url: %s
    allow: [%s]
`, bot, app, fake.APIURL(), strings.Join(users, ", "))
		ds = append(ds, daemontest.Start(t, o))
	}
	return fake, ds
}

// Two nodes with one Slack channel against one fake: one node holds the
// channel's role and its Socket Mode connection (the other has none and
// shows the channel as held by that node); people keep writing while the
// holder is killed with SIGKILL; the other node takes the channel over
// within about the lease ttl and opens its own connection, where the fake
// sends again every envelope the dead node had not acknowledged. In the
// end every message was accepted exactly once (by its ts) and answered;
// each chat's replies follow the order the messages were sent, except a
// message Slack delivered again, which is answered when it comes (counted);
// a reply sent twice is possible only in the documented window (Slack
// accepted it, the record did not commit before the kill) and is counted.
func TestClusterSlackHandover(t *testing.T) {
	users := []string{"U0A", "U0B", "U0C", "U0D"}
	fake, ds := slackNodes(t, 2, users)
	holder := holderOf(t, ds, []int{0, 1})
	other := 1 - holder
	oc := channelOn(t, ds[other])
	if oc.Node != nodeName(holder) || !oc.Remote || oc.Connected {
		t.Fatalf("the other node shows the channel as %+v: want held by %s, remote, not connected here", oc, nodeName(holder))
	}
	if n := fake.Connections(); n != 1 {
		t.Fatalf("%d Socket Mode connections with one holder, want 1", n)
	}
	if !strings.Contains(ds[holder].ManagerLog(), "role=channel:slack") {
		t.Errorf("the holder's log does not name the role channel:slack")
	}

	const perRound = 6
	var (
		mu       sync.Mutex
		envelope = map[string]string{} // text → its message event's envelope
	)
	sendRound := func(round int, gap time.Duration) {
		for i := range perRound {
			for _, u := range users {
				text := fmt.Sprintf("%s-r%d-m%d", u, round, i)
				p, err := fake.Post(fakeslack.Incoming{User: u, Text: text})
				if err != nil {
					t.Error(err)
					continue
				}
				mu.Lock()
				envelope[text] = p.Envelopes[0]
				mu.Unlock()
				time.Sleep(gap)
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
	distinctLines := func() int {
		n := 0
		for _, u := range users {
			seen := map[string]bool{}
			for _, m := range fake.BotMessages(fake.DMChannel(u)) {
				for _, l := range strings.Split(m.Text, "\n") {
					seen[l] = true
				}
			}
			n += len(seen)
		}
		return n
	}
	// Round 0 on the holder, answered.
	sendRound(0, 10*time.Millisecond)
	daemontest.WaitFor(t, func() bool { return distinctLines() >= perRound*len(users) }, 60*time.Second, "round 0 answered")
	// Round 1: the holder is killed while messages arrive and replies go;
	// people keep writing until after the takeover. The holder's
	// acknowledgements of round 1 are lost on the way (as those in flight
	// at a kill are): Slack sends those envelopes again to the next
	// holder, which must not take the messages in a second time.
	fake.HoldAcks(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sendRound(1, 200*time.Millisecond) }()
	base := sent()
	daemontest.WaitFor(t, func() bool { return sent() > base+2 }, 30*time.Second, "round 1 under way")
	killed := time.Now()
	ds[holder].Kill9()
	fake.HoldAcks(false)
	unacked := 0
	for _, e := range fake.Envelopes() {
		if !e.Acked {
			unacked++
		}
	}
	var took time.Duration
	daemontest.WaitFor(t, func() bool {
		c := channelOn(t, ds[other])
		if c.Node == nodeName(other) && c.Connected && fake.Connections() == 1 {
			took = time.Since(killed)
			return true
		}
		return false
	}, 30*time.Second, "the other node takes the channel over")
	t.Logf("channel taken over %.2fs after the kill -9 of its holder (lease_ttl %s; %d envelopes not acknowledged at the kill)",
		took.Seconds(), testTTL, unacked)
	// The role expires a ttl after its last renewal; the survivor looks
	// at each of its renewals (every ttl/3).
	if limit := testTTL + testTTL/3 + 2*time.Second; took > limit {
		t.Errorf("takeover took %s, goal lease_ttl + ttl/3 + 2s = %s", took, limit)
	}
	wg.Wait()
	sendRound(2, 10*time.Millisecond)

	// Every message answered, in its chat.
	want := 3 * perRound
	daemontest.WaitFor(t, func() bool { return distinctLines() >= want*len(users) }, 90*time.Second, "every message answered")
	mu.Lock()
	defer mu.Unlock()
	redelivered := map[string]bool{}
	for _, e := range fake.Envelopes() {
		if e.GaveUp {
			t.Errorf("envelope %s (event %s) was never acknowledged, after %d deliveries", e.ID, e.EventID, e.Deliveries)
		}
		if e.Deliveries > 1 {
			redelivered[e.ID] = true
		}
	}
	dups, late := 0, 0
	for _, u := range users {
		seen := map[string]bool{}
		last := -1
		for _, m := range fake.BotMessages(fake.DMChannel(u)) {
			again := 0
			ls := strings.Split(m.Text, "\n")
			for _, line := range ls {
				if seen[line] {
					again++
					continue
				}
				seen[line] = true
				var r, i int
				rest, ok := strings.CutPrefix(line, u+"-")
				if _, err := fmt.Sscanf(rest, "r%d-m%d", &r, &i); err != nil || !ok {
					t.Fatalf("chat %s got %q", u, line)
				}
				switch k := r*perRound + i; {
				case k > last:
					last = k
				case redelivered[envelope[line]]:
					late++ // Slack sent it again after its timeout: taken in late
				default:
					t.Fatalf("chat %s: %q out of order (its envelope was delivered once)", u, line)
				}
			}
			if again > 0 {
				dups++ // a reply (one turn's answer to a batch) sent again
				if again != len(ls) {
					t.Errorf("chat %s: a reply partly repeats earlier ones: %q", u, m.Text)
				}
			}
		}
		if len(seen) != want {
			t.Fatalf("chat %s: %d distinct replies, want %d", u, len(seen), want)
		}
	}
	t.Logf("envelopes Slack delivered more than once: %d; messages answered after later ones (sent again by Slack): %d", len(redelivered), late)
	// At most the parts in flight at the kill (one per chat) fall in the
	// window.
	t.Logf("replies (Slack messages) sent twice across the handover (the documented window): %d", dups)
	if dups > len(users) {
		t.Errorf("%d replies sent twice: more than the parts in flight at the kill (%d)", dups, len(users))
	}
	// Exactly once in: one message per Slack message, by its ts.
	for _, u := range users {
		texts := map[string]int{}
		n := 0
		for _, state := range []string{"pending", "inflight", "done", "dead"} {
			f := client.QueueFilter{Chat: "slack:" + fake.TeamID() + ":" + fake.DMChannel(u), State: state}
			err := ds[other].Client().EachQueued(context.Background(), f, func(m wire.ListedOut) error {
				n++
				texts[m.Text]++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if n != want || len(texts) != want {
			t.Errorf("chat %s: %d messages stored (%d distinct) for %d sent", u, n, len(texts), want)
		}
	}
	if c := channelOn(t, ds[other]); c.Backlog != 0 || c.Failed != 0 || c.Delivered == 0 {
		t.Errorf("channel after the handover: %+v", c)
	}
}
