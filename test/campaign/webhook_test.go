package campaign

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// receiver is a webhook endpoint on a fixed loopback port that can
// answer, fail (500), hang, or vanish (its port closed).
type receiver struct {
	addr string
	mu   sync.Mutex
	mode string // ok | fail | hang | gone
	got  map[string]int
	ln   net.Listener
	srv  *http.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{mode: "ok", got: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() { r.setMode(t, "gone") })
	return r
}

func (r *receiver) serve(ln net.Listener) {
	r.ln = ln
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		mode := r.mode
		r.mu.Unlock()
		switch mode {
		case "fail":
			w.WriteHeader(http.StatusInternalServerError)
			return
		case "hang":
			select {
			case <-req.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		var ev events.Event
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.got[ev.ID]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = r.srv.Serve(ln) }()
}

func (r *receiver) setMode(t *testing.T, mode string) {
	r.mu.Lock()
	was := r.mode
	r.mode = mode
	r.mu.Unlock()
	switch {
	case mode == "gone" && was != "gone":
		_ = r.srv.Close()
	case mode != "gone" && was == "gone":
		ln, err := net.Listen("tcp", r.addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", r.addr, err)
		}
		r.serve(ln)
	}
}

func (r *receiver) count() (distinct, repeats int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.got {
		distinct++
		repeats += n - 1
	}
	return
}

func (r *receiver) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id] > 0
}

// replyEventIDs are the ids of every reply event on the feed.
func replyEventIDs(t *testing.T, d *daemontest.Daemon) []string {
	t.Helper()
	var ids []string
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
			ids = append(ids, e.ID)
		}
		if len(page.Events) == 0 {
			return ids
		}
		after = page.Next
	}
}

// Campaign 5: two nodes on PostgreSQL deliver the replies to a webhook
// receiver that answers, fails, hangs and vanishes, while the node holding
// the webhooks role is frozen (SIGSTOP past the lease) twice, so the role
// moves to the other node and back to the first (whose webhook manager
// is stopped and started again). Every reply event is delivered.
func TestCampaignWebhooksAcrossHandover(t *testing.T) {
	rcv := newReceiver(t)
	dsn := pgtest.NewDatabase(t)
	yaml := fmt.Sprintf(`
webhooks:
  - name: receiver
    url: http://%s/hook
    secret: whsec_Y2FtcGFpZ24gd2ViaG9vayB0ZXN0IHNlY3JldCwgMzIgYnl0ZXM=
    events: [reply]
    timeout: 2s
`, rcv.addr)
	var ds []*daemontest.Daemon
	for i := range 2 {
		o := nodeOpts(dsn, i, nil)
		o.YAML = yaml
		ds = append(ds, daemontest.Start(t, o))
	}
	time.Sleep(leaseTTL/3 + 500*time.Millisecond)
	sent := map[string][]string{}
	n := 0
	send := func(via *daemontest.Daemon) {
		for _, c := range []string{"w-a", "w-b", "w-c"} {
			id, err := sendID(via, c, fmt.Sprintf("%s %d SLEEP=200ms", c, n), fmt.Sprintf("%s-%d", c, n), time.Now().Add(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			sent[c] = append(sent[c], id)
		}
		n++
	}
	handovers := 0
	for _, step := range []string{"ok", "fail", "freeze+hang", "gone", "freeze+fail", "ok"} {
		h := -1
		for i, d := range ds {
			if holderIn(d) {
				h = i
			}
		}
		mode, freeze := step, false
		if m, ok := strings.CutPrefix(step, "freeze+"); ok {
			mode, freeze = m, true
		}
		rcv.setMode(t, mode)
		other := ds[(h+1+len(ds))%len(ds)]
		send(other)
		if freeze && h >= 0 {
			ds[h].Signal(syscall.SIGSTOP)
			send(other)
			daemontest.WaitFor(t, func() bool { return holderIn(other) }, 20*time.Second, "the other node taking the webhooks role")
			send(other)
			ds[h].Signal(syscall.SIGCONT)
			handovers++
		}
		send(other)
		time.Sleep(3 * time.Second)
		t.Logf("step %s (holder node-%d)", step, h+1)
	}
	rcv.setMode(t, "ok")
	waitIdle(t, ds[0], 2*time.Minute)
	ids := replyEventIDs(t, ds[0])
	missing := 0
	ok := daemontest.Poll(func() bool {
		missing = 0
		for _, id := range ids {
			if !rcv.has(id) {
				missing++
			}
		}
		return missing == 0
	}, 90*time.Second)
	distinct, repeats := rcv.count()
	v := checkFeed(t, ds[0], sent)
	t.Logf("RESULT webhooks across handovers: %d handovers; %d reply events, delivered %d distinct (%d repeat deliveries), missing %d; feed: %s",
		handovers, len(ids), distinct, repeats, missing, v)
	if !ok {
		t.Errorf("%d of %d reply events never delivered", missing, len(ids))
	}
}

// holderIn reports whether d's manager log says it took the webhooks role
// after it last said it gave it up.
func holderIn(d *daemontest.Daemon) bool {
	log := d.ManagerLog()
	return strings.LastIndex(log, "this node delivers the webhooks now") > lastRoleLoss(log)
}

func lastRoleLoss(log string) int {
	i := -1
	for _, s := range []string{"this node no longer delivers the webhooks"} {
		if j := strings.LastIndex(log, s); j > i {
			i = j
		}
	}
	return i
}
