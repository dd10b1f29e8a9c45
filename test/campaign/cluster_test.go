package campaign

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

const leaseTTL = 3 * time.Second

func nodeOpts(dsn string, i int, more map[string]any) daemontest.Options {
	return daemontest.Set(daemontest.With(daemontest.With(quiet, map[string]any{
		"store.driver":   "postgres",
		"store.dsn":      dsn,
		"node.id":        fmt.Sprintf("node-%d", i+1),
		"node.lease_ttl": leaseTTL.String(),
	}), more))
}

type turnLine struct {
	what string
	pid  int
	at   time.Time
	text string
}

func readTurnLog(t *testing.T, path string) []turnLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
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

// Campaign 4: three nodes on PostgreSQL, lease ttl 3 s, 7 s turns on four
// chats, SIGSTOP of a node that owns chats mid-turn. The frozen node's
// agents must be gone before another node starts the same turn (no turn's
// work runs twice at once), and the feed answers every message once, in
// order. Then a second process with a running node's node.id is refused
// at once.
func TestCampaignClusterFrozenOwner(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	turns := filepath.Join(t.TempDir(), "turns.log")
	var ds []*daemontest.Daemon
	for i := range 3 {
		ds = append(ds, daemontest.Start(t, nodeOpts(dsn, i, map[string]any{"agent.env.STUB_TURN_LOG": turns})))
	}
	time.Sleep(leaseTTL/3 + 500*time.Millisecond)

	sent := map[string][]string{}
	chats := []string{"c01", "c02", "c03", "c04", "c05", "c06"}
	for _, chat := range chats { // one node takes them all
		d := ds[0]
		sent[chat] = append(sent[chat], d.WaitMessage(d.Send(chat, chat+" warm"), "done", 30*time.Second).ID)
	}
	// the node that owns the most chats is the one to freeze
	owner, most := -1, 0
	owned := map[string]bool{}
	for i, d := range ds {
		n := 0
		for _, chat := range chats {
			if len(d.Events(chat, "adopt", "")) > 0 {
				n++
			}
		}
		if n > most {
			owner, most = i, n
		}
	}
	if owner < 0 {
		t.Fatal("no node adopted a chat")
	}
	for _, chat := range chats {
		if len(ds[owner].Events(chat, "adopt", "")) > 0 {
			owned[chat] = true
		}
	}
	other := ds[(owner+1)%3]
	for _, chat := range chats {
		for k := range 2 {
			sent[chat] = append(sent[chat], other.Send(chat, fmt.Sprintf("%s #%d SLEEP=7s", chat, k)))
		}
	}
	// wait until the owner's agents have started their slow turns
	frozenPids := map[int]bool{}
	daemontest.WaitFor(t, func() bool {
		n := 0
		for _, l := range readTurnLog(t, turns) {
			if l.what == "start" && len(l.text) > 6 && l.text[3:6] == " #0" && owned[l.text[:3]] {
				n++
			}
		}
		return n == len(owned)
	}, 20*time.Second, "the owner's slow turns starting")
	time.Sleep(500 * time.Millisecond)
	for _, l := range readTurnLog(t, turns) {
		if l.what == "start" && strings.Contains(l.text, "SLEEP=7s") && descends(l.pid, ds[owner].Pid()) {
			frozenPids[l.pid] = true
		}
	}
	ds[owner].Signal(syscall.SIGSTOP)
	frozen := time.Now()
	defer ds[owner].Signal(syscall.SIGCONT)
	for chat, ids := range sent {
		for _, id := range ids {
			daemontest.WaitFor(t, func() bool {
				return daemontest.Poll(func() bool { return other.Message(id).State == "done" }, time.Second)
			}, 2*time.Minute, chat+" "+id+" done")
		}
	}
	ds[owner].Signal(syscall.SIGCONT)
	time.Sleep(leaseTTL)

	// overlap: a frozen agent's tick or finish after another agent
	// started the same text
	log := readTurnLog(t, turns)
	overlaps, frozenFinished := 0, 0
	for _, l := range log {
		if !frozenPids[l.pid] || (l.what != "tick" && l.what != "finish") {
			continue
		}
		if l.what == "finish" && l.at.After(frozen) {
			frozenFinished++
		}
		for _, o := range log {
			if o.what == "start" && o.text == l.text && o.pid != l.pid && o.at.Before(l.at) && o.at.After(frozen) {
				overlaps++
				t.Errorf("frozen agent %d still ran %q at %s, after agent %d started it at %s", l.pid, l.text,
					l.at.Format(time.StampMilli), o.pid, o.at.Format(time.StampMilli))
				break
			}
		}
	}
	v := checkFeed(t, other, sent)
	t.Logf("RESULT frozen owner (3 nodes, PostgreSQL, ttl %s): node-%d frozen with %d agents mid-turn; turns the frozen agents finished after the freeze %d, ran at once with the new owner %d; %s",
		leaseTTL, owner+1, len(frozenPids), frozenFinished, overlaps, v)
	if len(frozenPids) == 0 {
		t.Error("the frozen node had no agent mid-turn: the campaign tested nothing")
	}

	// the same node.id twice
	live := (owner + 2) % 3
	dup := daemontest.New(t, nodeOpts(dsn, live, nil))
	start := time.Now()
	dup.Spawn()
	code, exited := dup.Wait(15 * time.Second)
	took := time.Since(start)
	refused := exited && code != 0 && strings.Contains(dup.Output(), "node.id is in use")
	t.Logf("RESULT duplicate node.id: refused %t (exit %d) after %s", refused, code, took.Round(time.Millisecond))
	if !refused || took > 5*time.Second {
		t.Errorf("second process with node.id node-%d: exited %t code %d after %s:\n%s", live+1, exited, code, took, dup.Output())
	}
}

// descends reports whether pid is a descendant of ancestor (walking up
// through /proc/PID/stat).
func descends(pid, ancestor int) bool {
	for range 10 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			return false
		}
		pid, _ = strconv.Atoi(f[1])
		if pid == ancestor {
			return true
		}
		if pid <= 1 {
			return false
		}
	}
	return false
}
