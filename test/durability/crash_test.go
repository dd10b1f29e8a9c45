package durability

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Crash test parameters.
const (
	crashChats    = 6
	crashPerChat  = 40
	crashKills    = 5
	crashTurnTime = "SLEEP=30ms" // every turn takes a little while: turns are in flight
)

// crashSeed is the seed of the killer's and the senders' randomness:
// $DURABILITY_SEED when set (to replay a run), otherwise the clock.
func crashSeed(t *testing.T) uint64 {
	if s := os.Getenv("DURABILITY_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DURABILITY_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// accepted is one message the daemon accepted (answered 202).
type accepted struct {
	id, chat string
	idx      int // the chat's send index
	tries    int // POSTs it took
	dup      bool
}

// TestCrashManyKills runs the real binary: many messages over several
// chats, the daemon killed with SIGKILL several times while turns are in
// flight, restarted each time; at the end every accepted id is done,
// nothing is missing, and each chat's first-delivery order equals its send
// order.
//
// Six goroutines (one per chat) send 40 messages each over the HTTP API,
// in order, with random gaps; a POST that fails because the daemon is down
// (or was killed while answering) is retried with the same client id, so a
// retry of a message that had in fact been stored answers duplicate:true.
// Meanwhile the test goroutine kills the daemon with SIGKILL five times, at
// random intervals of 0.5–1.5 s and only while a turn is in flight, and
// restarts it each time. Every agent turn sleeps 30 ms.
func TestCrashManyKills(t *testing.T) {
	seed := crashSeed(t)
	t.Logf("seed %d (replay with DURABILITY_SEED=%d)", seed, seed)
	d := daemontest.Start(t, opts(quietChecks))
	start := time.Now()

	chats := make([]string, crashChats)
	for i := range chats {
		chats[i] = fmt.Sprintf("chat-%d", i)
	}
	dumpOnFailure(t, d, chats...)

	var (
		mu      sync.Mutex
		acc     []accepted
		sendErr []error
		wg      sync.WaitGroup
	)
	sendDeadline := time.Now().Add(90 * time.Second)
	for ci, chat := range chats {
		rng := rand.New(rand.NewPCG(seed, uint64(ci)+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range crashPerChat {
				time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
				id := fmt.Sprintf("crash-%s-%03d", chat, i)
				a, tries, err := sendID(d, chat, msgText(chat, i, crashTurnTime), id, sendDeadline)
				mu.Lock()
				if err != nil {
					sendErr = append(sendErr, err)
					mu.Unlock()
					return // the rest of this chat's order would be meaningless
				}
				acc = append(acc, accepted{id: a.ID, chat: chat, idx: i, tries: tries, dup: a.Duplicate})
				mu.Unlock()
			}
		}()
	}
	sendersDone := make(chan struct{})
	go func() { wg.Wait(); close(sendersDone) }()

	// The killer: the test goroutine (Kill9 and Restart may fail the test).
	rng := rand.New(rand.NewPCG(seed, 0))
	inflightAtKill := 0
	for k := 1; k <= crashKills; k++ {
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		// Kill only while a turn is in flight (give up waiting after 3 s:
		// the kill still happens, and the log says so).
		inflight := daemontest.Poll(func() bool {
			s, err := statusOf(d)
			return err == nil && s.Queue.Inflight > 0
		}, 3*time.Second)
		if inflight {
			inflightAtKill++
		}
		pid := d.Pid()
		d.Kill9()
		t.Logf("kill %d at %s: SIGKILL pid %d (turn in flight: %t)", k, time.Since(start).Round(time.Millisecond), pid, inflight)
		d.Restart()
		t.Logf("kill %d: restarted as pid %d at %s", k, d.Pid(), time.Since(start).Round(time.Millisecond))
	}
	if inflightAtKill < 3 {
		t.Errorf("only %d of %d kills hit a turn in flight; the test did not test much", inflightAtKill, crashKills)
	}

	select {
	case <-sendersDone:
	case <-time.After(time.Until(sendDeadline) + 5*time.Second):
		t.Fatalf("senders still running past their deadline")
	}
	t.Logf("all sends answered at %s", time.Since(start).Round(time.Millisecond))
	for _, err := range sendErr {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	ids := make([]string, len(acc))
	want := map[string][]int{}
	dups, retried := 0, 0
	for i, a := range acc {
		ids[i] = a.id
		if a.dup {
			dups++
		}
		if a.tries > 1 {
			retried++
		}
	}
	for _, chat := range chats {
		for i := range crashPerChat {
			want[chat] = append(want[chat], i)
		}
	}
	if len(acc) != crashChats*crashPerChat {
		t.Fatalf("accepted %d messages, want %d", len(acc), crashChats*crashPerChat)
	}
	t.Logf("accepted %d messages; %d needed more than one POST, %d of those answered duplicate:true", len(acc), retried, dups)

	s := waitAllDone(t, d, ids, 60*time.Second)
	t.Logf("all %d messages done at %s", len(ids), time.Since(start).Round(time.Millisecond))
	if s.Queue.Done != len(ids) || s.Queue.Dead != 0 || s.Queue.Pending != 0 || s.Queue.Inflight != 0 {
		t.Errorf("queue at the end: %+v; want %d done and nothing else", s.Queue, len(ids))
	}
	if l := queueLen(t, d); l != 0 {
		t.Errorf("queue list (pending, in flight, dead) has %d entries, want 0", l)
	}
	checkSessionsClean(t, d, s)

	redelivered := checkOrder(t, d, want)
	t.Logf("conversations used: %d; redeliveries (at-least-once window): %d; lifecycle events %v",
		len(conversationIDs(d)), redelivered, lifecycleSummary(d))

	code, took := d.Term()
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("final SIGTERM: exit %d after %s", code, took.Round(time.Millisecond))
	if left := d.WaitNoProcs(3 * time.Second); len(left) != 0 {
		t.Errorf("processes with the state dir in their environment outlived the daemon: %v", left)
	}
}

// queueLen is the number of messages GET /v1/queue lists by default
// (pending, in flight and dead).
func queueLen(t *testing.T, d *daemontest.Daemon) int {
	t.Helper()
	var out api.QueuePage
	st, data := d.Get("/v1/queue?limit=1000")
	if st != 200 {
		t.Fatalf("GET /v1/queue: HTTP %d: %s", st, data)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("GET /v1/queue: %v", err)
	}
	return len(out.Messages)
}
