package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// Webhooks are delivered by one node of several (the holder of the
// webhooks role): every reply reaches the receiver once, not once per
// node; when that node is killed, another one takes the role and delivers
// what follows.
func TestClusterWebhooksOneNode(t *testing.T) {
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev events.Event
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got[ev.ID]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dsn := pgtest.NewDatabase(t)
	yaml := fmt.Sprintf(`
webhooks:
  - name: receiver
    url: %s/hook
    secret: whsec_Y2x1c3RlciB3ZWJob29rIHRlc3Qgc2VjcmV0LCAzMiBieXRlcw==
    events: [reply]
`, srv.URL)
	var ds []*daemontest.Daemon
	for i := range 2 {
		o := nodeOpts(dsn, i, nil)
		o.YAML = yaml
		ds = append(ds, daemontest.Start(t, o))
	}
	time.Sleep(testTTL/3 + 500*time.Millisecond)
	sent := map[string][]string{}
	for round := range 5 {
		for j, c := range []string{"w-a", "w-b", "w-c"} {
			sent[c] = append(sent[c], ds[(round+j)%2].Send(c, fmt.Sprintf("%s %d", c, round)))
		}
	}
	waitAll(t, ds[0], sent, 60*time.Second)
	replies := func() int {
		answered, _ := allReplies(t, ds[1])
		turns := map[string]bool{}
		for _, ts := range answered {
			for _, tu := range ts {
				turns[tu] = true
			}
		}
		return len(turns)
	}
	want := replies()
	daemontest.WaitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == want }, 30*time.Second, "every reply delivered")
	time.Sleep(time.Second)
	mu.Lock()
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	mu.Unlock()

	// the delivering node dies; the other takes the role over
	holder := -1
	for i, d := range ds {
		if strings.Contains(d.ManagerLog(), "this node delivers the webhooks now") {
			holder = i
		}
	}
	if holder < 0 {
		t.Fatal("no node took the webhooks role")
	}
	ds[holder].Kill9()
	other := ds[1-holder]
	for round := 5; round < 8; round++ {
		for _, c := range []string{"w-a", "w-b", "w-c"} {
			sent[c] = append(sent[c], other.Send(c, fmt.Sprintf("%s %d", c, round)))
		}
	}
	waitAll(t, other, sent, 60*time.Second)
	answered, _ := allReplies(t, other)
	daemontest.WaitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for range got {
			n++
		}
		turns := map[string]bool{}
		for _, ts := range answered {
			for _, tu := range ts {
				turns[tu] = true
			}
		}
		return n >= len(turns)
	}, 30*time.Second, "the replies after the kill delivered by the other node")
}
