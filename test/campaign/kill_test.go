package campaign

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Campaign 1: kill -9 and SIGSTOP of the daemon under load (SQLite). Four
// chats send 30 messages each with client ids (retried while the daemon
// is down); meanwhile the daemon is killed with SIGKILL three times and
// frozen with SIGSTOP for 1.5 s three times. Nothing accepted is lost and
// the feed never doubles or reorders a reply.
func TestCampaignKillStopUnderLoad(t *testing.T) {
	const chats, perChat = 4, 30
	d := daemontest.Start(t, daemontest.Set(quiet))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	var mu sync.Mutex
	sent := map[string][]string{}
	var errs []error
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Minute)
	for c := range chats {
		chat := fmt.Sprintf("load-%d", c)
		rng := rand.New(rand.NewPCG(seed, uint64(c)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perChat {
				time.Sleep(time.Duration(30+rng.IntN(120)) * time.Millisecond)
				id, err := sendID(d, chat, fmt.Sprintf("%s #%02d SLEEP=40ms", chat, i), fmt.Sprintf("%s-%02d", chat, i), deadline)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				sent[chat] = append(sent[chat], id)
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	rng := rand.New(rand.NewPCG(seed, 99))
	kills, stops, inflight := 0, 0, 0
	for round := 0; round < 6; round++ {
		time.Sleep(time.Duration(400+rng.IntN(800)) * time.Millisecond)
		if daemontest.Poll(func() bool { return d.Status().Queue.Inflight > 0 }, 2*time.Second) {
			inflight++
		}
		if round%2 == 0 {
			d.Kill9()
			d.Restart()
			kills++
		} else {
			d.Signal(syscall.SIGSTOP)
			time.Sleep(1500 * time.Millisecond)
			d.Signal(syscall.SIGCONT)
			stops++
		}
	}
	select {
	case <-done:
	case <-time.After(time.Until(deadline) + 10*time.Second):
		t.Fatal("senders did not finish")
	}
	for _, err := range errs {
		t.Error(err)
	}
	waitIdle(t, d, 2*time.Minute)
	q := d.Status().Queue
	v := checkFeed(t, d, sent)
	t.Logf("RESULT kill9+SIGSTOP (SQLite): %d kills, %d stops (%d with a turn in flight); %s; dead %d",
		kills, stops, inflight, v, q.Dead)
	if q.Dead != 0 {
		t.Errorf("%d messages dead", q.Dead)
	}
}
