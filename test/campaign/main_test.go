// Package campaign reruns, from the outside, compact versions of the fault
// and attacker campaigns that found the bugs of the fault hunt (kill -9 and
// SIGSTOP under load, an outage that starts mid-turn, an agent that never
// reads, a frozen cluster owner, webhook receivers that fail across a
// role handover, a full disk, a prompt-injected agent in the sandbox).
//
// They run the real dispatch binary (internal/testutil/daemontest) and take
// minutes, so they run only with DISPATCH_CAMPAIGN=1; see README.md.
package campaign

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) {
	if os.Getenv("DISPATCH_CAMPAIGN") != "1" {
		fmt.Println("campaigns skipped: set DISPATCH_CAMPAIGN=1 to run them (see test/campaign/README.md)")
		os.Exit(0)
	}
	daemontest.Main(m)
}

// quiet keeps health verdicts away from slow turns on a loaded machine.
var quiet = map[string]any{
	"health.stuck_timeout":            "1m",
	"health.first_turn_stuck_timeout": "2m",
	"health.idle_timeout":             "1h",
}

func sh(script string) string {
	return "SH=" + base64.StdEncoding.EncodeToString([]byte(script))
}

// sendID posts text to chat with client id cid until the daemon accepts it
// (retrying transport errors and 5xx with the same client id) or deadline.
func sendID(d *daemontest.Daemon, chat, text, cid string, deadline time.Time) (string, error) {
	last := ""
	for {
		st, data, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: chat, Text: text, ClientID: cid})
		switch {
		case err != nil:
			last = err.Error()
		case st == http.StatusAccepted:
			var acc api.Accepted
			if err := json.Unmarshal(data, &acc); err != nil {
				return "", err
			}
			return acc.ID, nil
		case st >= 500:
			last = fmt.Sprintf("HTTP %d: %s", st, data)
		default:
			return "", fmt.Errorf("POST %s: HTTP %d: %s", cid, st, data)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("POST %s: not accepted; last: %s", cid, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// feed reads every reply event through d: message id → how many replies
// carried it, and each chat's message ids in feed order.
func feed(t *testing.T, d *daemontest.Daemon) (map[string]int, map[string][]string) {
	t.Helper()
	count := map[string]int{}
	order := map[string][]string{}
	after := int64(0)
	for {
		st, body := d.Get(fmt.Sprintf("/v1/events?after=%d&types=reply&limit=1000", after))
		if st != http.StatusOK {
			t.Fatalf("GET /v1/events: HTTP %d: %s", st, body)
		}
		var page api.EventsOut
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			for _, id := range e.MessageIDs {
				count[id]++
				order[e.ChatID] = append(order[e.ChatID], id)
			}
		}
		if len(page.Events) == 0 {
			return count, order
		}
		after = page.Next
	}
}

// feedVerdict compares the feed with what was accepted, per chat in send
// order: missing (accepted, never answered), doubled (answered more than
// once) and the chats whose answers came in another order.
type feedVerdict struct {
	accepted, answered, missing, doubled, reordered int
}

func (v feedVerdict) String() string {
	return fmt.Sprintf("accepted %d, answered %d, missing %d, doubled %d, chats reordered %d",
		v.accepted, v.answered, v.missing, v.doubled, v.reordered)
}

func (v feedVerdict) held() bool { return v.missing == 0 && v.doubled == 0 && v.reordered == 0 }

func checkFeed(t *testing.T, d *daemontest.Daemon, sent map[string][]string) feedVerdict {
	t.Helper()
	count, order := feed(t, d)
	var v feedVerdict
	for chat, ids := range sent {
		v.accepted += len(ids)
		for _, id := range ids {
			switch n := count[id]; {
			case n == 0:
				v.missing++
				t.Errorf("chat %s: %s accepted, never answered", chat, id)
			case n > 1:
				v.doubled++
				t.Errorf("chat %s: %s answered %d times", chat, id, n)
			}
			if count[id] > 0 {
				v.answered++
			}
		}
		var first []string
		seen := map[string]bool{}
		for _, id := range order[chat] {
			if !seen[id] {
				seen[id] = true
				first = append(first, id)
			}
		}
		if !slices.Equal(first, ids) {
			v.reordered++
			t.Errorf("chat %s: answered in order %v, sent %v", chat, first, ids)
		}
	}
	return v
}

// waitIdle waits until nothing is pending or in flight.
func waitIdle(t *testing.T, d *daemontest.Daemon, timeout time.Duration) {
	t.Helper()
	d.WaitFor(func() bool {
		q := d.Status().Queue
		return q.Pending == 0 && q.Inflight == 0
	}, timeout, "the queue to drain")
}

// countLines counts the lifecycle lines of chat (any chat for "") whose
// text contains part.
func countLines(d *daemontest.Daemon, chat, part string) int {
	n := 0
	for _, e := range d.Lifecycle() {
		if (chat == "" || e.Chat == chat) && strings.Contains(e.Line, part) {
			n++
		}
	}
	return n
}
