package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// turnLine is one line of the stub's turn log.
type turnLine struct {
	what string
	pid  int
	at   time.Time
	text string
}

func readTurnLog(t *testing.T, path string) []turnLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no agent has started a turn yet
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []turnLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		out = append(out, turnLine{what: f[0], pid: pid, at: time.Unix(0, ns), text: f[3]})
	}
	return out
}

// gone reports whether pid has ended (a zombie not yet reaped by its
// stopped parent counts as ended).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// An owner stopped dead (SIGSTOP) mid-turn cannot stop its agent; its
// agent watchdog does, before the lease can expire: the frozen node's
// agent is gone (its turn never finished) before the new owner starts the
// turn again, so the agent's work never runs twice at once.
func TestClusterFrozenOwnersAgentStopped(t *testing.T) {
	turns := filepath.Join(t.TempDir(), "turns.log")
	_, ds := startNodes(t, 2, map[string]any{"agent.env.STUB_TURN_LOG": turns})
	chat := "frozen-chat"
	ds[0].WaitMessage(ds[0].Send(chat, "warm up"), "done", 30*time.Second)
	owner := adopters(ds, chat)[0]
	other := ds[1-owner]
	slow := "slow SLEEP=8s"
	id := other.Send(chat, slow)
	other.WaitMessage(id, "inflight", 10*time.Second)
	var first turnLine
	daemontest.WaitFor(t, func() bool {
		for _, l := range readTurnLog(t, turns) {
			if l.what == "start" && l.text == slow {
				first = l
				return true
			}
		}
		return false
	}, 10*time.Second, "the owner's agent starting the slow turn")
	ds[owner].Signal(syscall.SIGSTOP)
	frozen := time.Now()
	defer ds[owner].Signal(syscall.SIGCONT)
	other.WaitMessage(id, "done", 30*time.Second)

	var again turnLine
	var lastTick time.Time
	for _, l := range readTurnLog(t, turns) {
		switch {
		case l.pid == first.pid && l.what == "finish" && l.text == slow:
			t.Errorf("the frozen owner's agent finished the turn at %s (frozen at %s)", l.at.Format(time.StampMilli), frozen.Format(time.StampMilli))
		case l.pid == first.pid && l.what == "tick":
			lastTick = l.at
		case l.pid != first.pid && l.what == "start" && l.text == slow && again.pid == 0:
			again = l
		}
	}
	if again.pid == 0 {
		t.Fatal("the new owner never started the turn")
	}
	if !lastTick.Before(again.at) {
		t.Errorf("the frozen owner's agent (pid %d) still ran at %s, after the new owner's agent started the turn at %s",
			first.pid, lastTick.Format(time.StampMilli), again.at.Format(time.StampMilli))
	}
	if !gone(first.pid) {
		t.Errorf("the frozen owner's agent (pid %d) is still running", first.pid)
	}
	t.Logf("frozen at %s; its agent's last sign of life %s after; the new owner started the turn %s after",
		frozen.Format(time.StampMilli), lastTick.Sub(frozen).Round(time.Millisecond), again.at.Sub(frozen).Round(time.Millisecond))
}

// kill -9 of a node: its agent watchdog sees the daemon gone and kills
// the agents at once, long before their leases expire.
func TestClusterKilledNodesAgentStopped(t *testing.T) {
	turns := filepath.Join(t.TempDir(), "turns.log")
	_, ds := startNodes(t, 1, map[string]any{"agent.env.STUB_TURN_LOG": turns})
	slow := "slow SLEEP=20s"
	ds[0].WaitMessage(ds[0].Send("killed-chat", slow), "inflight", 10*time.Second)
	var agent turnLine
	daemontest.WaitFor(t, func() bool {
		for _, l := range readTurnLog(t, turns) {
			if l.what == "start" && l.text == slow {
				agent = l
				return true
			}
		}
		return false
	}, 10*time.Second, "the agent starting the slow turn")
	ds[0].Kill9()
	daemontest.WaitFor(t, func() bool { return gone(agent.pid) }, testTTL/2, "the killed node's agent ending")
}

// A second process given a running node's node.id is refused at once,
// with a message saying so, before it serves anything; the running node
// is untouched. After kill -9 of the node, a process with its id starts
// at once (the claim ends with the killed process's connection).
func TestClusterDuplicateNodeIDRefused(t *testing.T) {
	dsn, ds := startNodes(t, 1, nil)
	dup := daemontest.New(t, nodeOpts(dsn, 0, nil))
	start := time.Now()
	dup.Spawn()
	code, exited := dup.Wait(10 * time.Second)
	if !exited {
		t.Fatalf("a second process with node.id %s still runs after 10s:\n%s", nodeName(0), dup.Output())
	}
	if took := time.Since(start); code == 0 || took > 5*time.Second || !strings.Contains(dup.Output(), "node.id is in use by another running dispatch process") {
		t.Errorf("second process with the same node.id: exit %d after %s; want a clear refusal at once:\n%s", code, took.Round(time.Millisecond), dup.Output())
	}
	ds[0].WaitMessage(ds[0].Send("still-here", "hello"), "done", 20*time.Second)

	ds[0].Kill9()
	start = time.Now()
	dup.Restart()
	dup.WaitMessage(dup.Send("still-here", "again"), "done", 30*time.Second)
	t.Logf("after kill -9, a process with the same node.id answered after %s", time.Since(start).Round(time.Millisecond))
}
