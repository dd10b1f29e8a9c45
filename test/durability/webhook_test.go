package durability

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestWebhookKill9LosesNoEvent runs the real binary with a webhook to a
// slow loopback receiver: replies pile up undelivered, the daemon is
// killed with SIGKILL (twice) while deliveries are in flight and
// restarted; at the end every reply event of the feed has reached the
// receiver, each with a valid signature, a redelivery always carrying the
// same webhook-id, and each chat's events first received in feed order.
// Every message is named by exactly one reply, whose turn id it records.
func TestWebhookKill9LosesNoEvent(t *testing.T) {
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("durability test secret, 32 bytes"))
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		id, chat string
		seq      int64
	}
	var (
		mu       sync.Mutex
		received []got
		bad      []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev events.Event
		_ = json.Unmarshal(body, &ev)
		time.Sleep(15 * time.Millisecond) // slow: a backlog builds up
		mu.Lock()
		if r.Header.Get("webhook-id") != ev.ID {
			bad = append(bad, fmt.Sprintf("webhook-id %q for event %q", r.Header.Get("webhook-id"), ev.ID))
		}
		received = append(received, got{id: ev.ID, chat: ev.ChatID, seq: ev.Seq})
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	d := daemontest.Start(t, daemontest.Options{
		Set: map[string]any{"agent.kind": "echo"},
		YAML: fmt.Sprintf(`
webhooks:
  - name: receiver
    url: %s/hook
    secret: %s
    events: [reply]
`, srv.URL, secret),
	})
	chats := []string{"alice", "bob", "carol", "dave"}
	var ids []string
	send := func(round int) {
		for i := range 15 {
			for _, c := range chats {
				ids = append(ids, d.Send(c, fmt.Sprintf("round %d message %d", round, i)))
			}
		}
	}
	for round := range 2 {
		send(round)
		// Let some replies and deliveries happen, then kill mid-delivery.
		daemontest.WaitFor(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(received) > 3*(round+1)
		}, 30*time.Second, "deliveries under way")
		d.Kill9()
		d.Restart()
	}
	for _, id := range ids {
		d.WaitMessage(id, "done", 60*time.Second)
	}

	// The feed: every reply event.
	var feed []events.Event
	after := int64(0)
	for {
		st, data := d.Get(fmt.Sprintf("/v1/events?after=%d&types=reply&limit=1000", after))
		if st != 200 {
			t.Fatalf("events: HTTP %d %s", st, data)
		}
		var page api.EventsOut
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		feed = append(feed, page.Events...)
		after = page.Next
	}
	named := map[string]int{}
	for _, ev := range feed {
		for _, m := range ev.MessageIDs {
			named[m]++
			if out := d.Message(m); out.TurnID != ev.TurnID {
				t.Errorf("message %s records turn %q; its reply is turn %q", m, out.TurnID, ev.TurnID)
			}
		}
	}
	for _, id := range ids {
		if named[id] != 1 {
			t.Errorf("message %s is named by %d replies, want 1", id, named[id])
		}
	}

	daemontest.WaitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, g := range received {
			seen[g.id] = true
		}
		for _, ev := range feed {
			if !seen[ev.ID] {
				return false
			}
		}
		return true
	}, 60*time.Second, "every reply event delivered")

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("bad deliveries: %v", bad)
	}
	// Per chat, first receipts follow feed order.
	first := map[string][]int64{}
	seen := map[string]bool{}
	for _, g := range received {
		if !seen[g.id] {
			seen[g.id] = true
			first[g.chat] = append(first[g.chat], g.seq)
		}
	}
	for _, c := range chats {
		var want []int64
		for _, ev := range feed {
			if ev.ChatID == c {
				want = append(want, ev.Seq)
			}
		}
		if !slices.Equal(first[c], want) {
			t.Errorf("chat %s: first receipts %v, feed order %v", c, first[c], want)
		}
	}
	t.Logf("%d messages, %d replies, %d deliveries (%d redelivered after kill -9)",
		len(ids), len(feed), len(received), len(received)-len(seen))
}
