package cluster

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// faultSeed is the randomized fault test's seed: DISPATCH_FAULT_SEED, or
// the clock (logged, so that a failure can be run again).
func faultSeed(t *testing.T) uint64 {
	if s := os.Getenv("DISPATCH_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DISPATCH_FAULT_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// A randomized, seeded run of faults across three nodes — kill -9 and
// restart, SIGSTOP past the lease and SIGCONT, clean restarts — while
// messages go through random live nodes. Once everything runs again and
// settles: no message lost, each answered exactly once (two owners acting
// for one chat would answer one twice or out of order), every chat's
// order kept, nothing left in flight.
func TestClusterRandomFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	seed := faultSeed(t)
	t.Logf("seed %d (DISPATCH_FAULT_SEED=%d to run it again)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	_, ds := startNodes(t, 3, nil)
	type state int
	const (
		running state = iota
		killed
		paused
	)
	st := make([]state, len(ds))
	pausedUntil := make([]time.Time, len(ds))
	defer func() {
		for i, d := range ds {
			if st[i] == paused {
				d.Signal(syscall.SIGCONT)
			}
		}
	}()
	chats := []string{"f-0", "f-1", "f-2", "f-3", "f-4", "f-5"}
	sent := map[string][]string{}
	up := func() []int {
		var out []int
		for i := range ds {
			if st[i] == running {
				out = append(out, i)
			}
		}
		return out
	}
	var log []string
	deadline := time.Now().Add(30 * time.Second)
	for step := 0; time.Now().Before(deadline); step++ {
		for i := range ds { // paused nodes run again when their time is up
			if st[i] == paused && time.Now().After(pausedUntil[i]) {
				ds[i].Signal(syscall.SIGCONT)
				st[i] = running
				log = append(log, fmt.Sprintf("%d: SIGCONT %s", step, nodeName(i)))
			}
		}
		live := up()
		switch r := rng.IntN(100); {
		case r < 80 && len(live) > 0:
			c := chats[rng.IntN(len(chats))]
			d := ds[live[rng.IntN(len(live))]]
			sent[c] = append(sent[c], d.Send(c, fmt.Sprintf("%s step %d SLEEP=%dms", c, step, rng.IntN(300))))
		case r < 86 && len(live) > 1:
			i := live[rng.IntN(len(live))]
			ds[i].Kill9()
			st[i] = killed
			log = append(log, fmt.Sprintf("%d: kill -9 %s", step, nodeName(i)))
		case r < 92 && len(live) > 1:
			i := live[rng.IntN(len(live))]
			ds[i].Signal(syscall.SIGSTOP)
			st[i] = paused
			pausedUntil[i] = time.Now().Add(time.Duration(1000+rng.IntN(5000)) * time.Millisecond)
			log = append(log, fmt.Sprintf("%d: SIGSTOP %s until +%s", step, nodeName(i), time.Until(pausedUntil[i]).Round(time.Millisecond)))
		case r < 96:
			for i := range ds {
				if st[i] == killed {
					ds[i].Restart()
					st[i] = running
					log = append(log, fmt.Sprintf("%d: restart %s", step, nodeName(i)))
					break
				}
			}
		default:
			if len(live) > 1 {
				i := live[rng.IntN(len(live))]
				ds[i].Term()
				ds[i].Restart()
				log = append(log, fmt.Sprintf("%d: SIGTERM and restart %s", step, nodeName(i)))
			}
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
	}
	// settle: every node runs again
	for i, d := range ds {
		switch st[i] {
		case paused:
			d.Signal(syscall.SIGCONT)
		case killed:
			d.Restart()
		}
		st[i] = running
	}
	t.Logf("faults:\n%s", join(log))
	n := 0
	for _, ids := range sent {
		n += len(ids)
	}
	t.Logf("%d messages over %d chats", n, len(chats))
	waitAll(t, ds[0], sent, 120*time.Second)
	checkAnswered(t, ds[1], sent)
	daemontest.WaitFor(t, func() bool { q := ds[2].Status().Queue; return q.Inflight == 0 && q.Pending == 0 },
		30*time.Second, "nothing in flight or waiting after settling")
}

func join(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}
