package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/cluster"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// testTTL is the lease ttl of the cluster tests: the smallest allowed, so
// that takeovers happen within seconds.
const testTTL = 3 * time.Second

// nodeOpts is node i's configuration on the database at dsn.
func nodeOpts(dsn string, i int, more map[string]any) daemontest.Options {
	return pgOpts(dsn, daemontest.With(map[string]any{
		"node.id":        nodeName(i),
		"node.lease_ttl": testTTL.String(),
	}, more))
}

func nodeName(i int) string { return fmt.Sprintf("node-%d", i+1) }

// startNodes starts n nodes on one fresh database and waits until each
// sees the others alive.
func startNodes(t *testing.T, n int, more map[string]any) (string, []*daemontest.Daemon) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	var ds []*daemontest.Daemon
	for i := range n {
		ds = append(ds, daemontest.Start(t, nodeOpts(dsn, i, more)))
	}
	// every node reads the live nodes at each renewal (ttl/3)
	time.Sleep(testTTL/3 + 500*time.Millisecond)
	return dsn, ds
}

// allReplies reads every reply event of the feed (shared by the nodes)
// through d: message id → the turn ids that answered it, and each chat's
// answered ids in feed order.
func allReplies(t *testing.T, d *daemontest.Daemon) (map[string][]string, map[string][]string) {
	t.Helper()
	answered := map[string][]string{}
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
				answered[id] = append(answered[id], e.TurnID)
				order[e.ChatID] = append(order[e.ChatID], id)
			}
		}
		if len(page.Events) == 0 {
			return answered, order
		}
		after = page.Next
	}
}

// checkAnswered fails unless every sent message was answered exactly once
// and each chat's messages in the order they were sent.
func checkAnswered(t *testing.T, d *daemontest.Daemon, sent map[string][]string) {
	t.Helper()
	answered, order := allReplies(t, d)
	for id, turns := range answered {
		if len(turns) != 1 {
			t.Errorf("message %s answered %d times (turns %v)", id, len(turns), turns)
		}
	}
	for chat, ids := range sent {
		for _, id := range ids {
			if len(answered[id]) == 0 {
				t.Errorf("chat %s: message %s never answered", chat, id)
			}
		}
		if got := order[chat]; !slices.Equal(got, ids) {
			t.Errorf("chat %s answered in order %v, sent %v", chat, got, ids)
		}
	}
}

// adopters returns, per chat, the nodes (indexes) that took its lease, in
// the order of their lifecycle logs.
func adopters(ds []*daemontest.Daemon, chat string) []int {
	var out []int
	for i, d := range ds {
		if len(d.Events(chat, "adopt", "")) > 0 {
			out = append(out, i)
		}
	}
	return out
}

// waitAll waits until every sent message is done, polling through d.
func waitAll(t *testing.T, d *daemontest.Daemon, sent map[string][]string, timeout time.Duration) {
	t.Helper()
	for _, ids := range sent {
		for _, id := range ids {
			d.WaitMessage(id, "done", timeout)
		}
	}
}

// Three nodes on one database: chats spread over the nodes by placement,
// messages sent through any node are all answered, once each and in each
// chat's order, by the chat's one owner.
func TestClusterThreeNodes(t *testing.T) {
	_, ds := startNodes(t, 3, map[string]any{"sessions.master": "chat-00", "sessions.exempt_suffix": "-bg"})
	var chats []string
	for i := range 12 {
		chats = append(chats, fmt.Sprintf("chat-%02d", i))
	}
	chats[11] += "-bg"
	sent := map[string][]string{}
	for round := range 4 {
		for j, c := range chats {
			d := ds[(round+j)%len(ds)] // through every node in turn
			sent[c] = append(sent[c], d.Send(c, fmt.Sprintf("%s #%d", c, round)))
		}
	}
	waitAll(t, ds[2], sent, 60*time.Second)
	checkAnswered(t, ds[0], sent)
	nodes := []cluster.Node{{ID: nodeName(0)}, {ID: nodeName(1)}, {ID: nodeName(2)}}
	per := make([]int, len(ds))
	for _, c := range chats {
		got := adopters(ds, c)
		if len(got) != 1 {
			t.Errorf("chat %s taken by nodes %v, want exactly one", c, got)
			continue
		}
		per[got[0]]++
		if want := cluster.Place(c, nodes); nodeName(got[0]) != want {
			t.Errorf("chat %s owned by %s, placement says %s", c, nodeName(got[0]), want)
		}
	}
	for i, n := range per {
		if n == 0 {
			t.Errorf("node %s owns no chat: %v", nodeName(i), per)
		}
	}
	t.Logf("chats per node: %v", per)

	// status on any node shows the whole cluster: every chat with its
	// owner, and the three nodes with their heartbeats
	st := ds[1].Status()
	if st.Daemon.Node != nodeName(1) || len(st.Nodes) != 3 {
		t.Fatalf("status of node-2: node %q, nodes %+v", st.Daemon.Node, st.Nodes)
	}
	for _, n := range st.Nodes {
		if !n.Live || n.HeartbeatAge > testTTL.Seconds() || n.Self != (n.ID == nodeName(1)) {
			t.Errorf("node in status: %+v", n)
		}
	}
	owner := map[string]string{}
	for _, s := range st.Sessions {
		owner[s.ChatID] = s.Owner
		// the master session and the exempt suffix show wherever the
		// chat runs: one rule for local and remote sessions
		if want := s.ChatID == "chat-00" || strings.HasSuffix(s.ChatID, "-bg"); s.Exempt != want || s.State != "idle" || !s.Healthy {
			t.Errorf("status of node-2: session %s (owner %s): exempt %t (want %t), state %q, healthy %t",
				s.ChatID, s.Owner, s.Exempt, want, s.State, s.Healthy)
		}
	}
	for _, c := range chats {
		if want := nodeName(adopters(ds, c)[0]); owner[c] != want {
			t.Errorf("status: chat %s owner %q, want %q", c, owner[c], want)
		}
	}
	out, _, code := ds[0].Run("status")
	if code != 0 || !strings.Contains(out, "OWNER") || !strings.Contains(out, "node node-1 (this node): live") {
		t.Errorf("dispatch status (exit %d):\n%s", code, out)
	}
	// an operator's command goes to the owner; another node says so
	c0 := chats[0]
	notOwner := ds[(adopters(ds, c0)[0]+1)%3]
	if out, errOut, code := notOwner.Run("sessions", "kill", c0); code != 1 || !strings.Contains(out+errOut, "runs on another node") {
		t.Errorf("sessions kill on a node that does not own the chat: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := notOwner.Run("sessions", "kill", "no-such-chat"); code != 1 || !strings.Contains(out+errOut, "unknown chat") {
		t.Errorf("sessions kill of an unknown chat: exit %d\n%s%s", code, out, errOut)
	}
	// metrics: the leases each node holds add up to the chats
	held := 0
	for i, d := range ds {
		code, body := d.Get("/metrics")
		if code != http.StatusOK {
			t.Fatalf("metrics: HTTP %d", code)
		}
		var n int
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "dispatch_cluster_leases_held "); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		if n != per[i] {
			t.Errorf("node %s: dispatch_cluster_leases_held %d, owns %d", nodeName(i), n, per[i])
		}
		held += n
	}
	if held != len(chats) {
		t.Errorf("leases held in all: %d, chats %d", held, len(chats))
	}
}

// kill -9 of a node under load: its chats are taken over within the lease
// ttl plus a few seconds, nothing is lost, no message is answered twice,
// every chat's order holds.
func TestClusterKill9Takeover(t *testing.T) {
	_, ds := startNodes(t, 3, nil)
	var chats []string
	for i := range 9 {
		chats = append(chats, fmt.Sprintf("k-%02d", i))
	}
	var (
		mu   sync.Mutex
		sent = map[string][]string{}
	)
	send := func(via *daemontest.Daemon, c string, n int) {
		mu.Lock()
		defer mu.Unlock()
		sent[c] = append(sent[c], via.Send(c, fmt.Sprintf("%s #%d SLEEP=200ms", c, n)))
	}
	for n := range 3 {
		for _, c := range chats {
			send(ds[n%3], c, n)
		}
	}
	waitAll(t, ds[0], sent, 60*time.Second)
	// the victim: the owner of chat k-00; the survivors take the load
	victim := adopters(ds, chats[0])[0]
	var survivors []*daemontest.Daemon
	for i, d := range ds {
		if i != victim {
			survivors = append(survivors, d)
		}
	}
	for n := 3; n < 6; n++ {
		for _, c := range chats {
			send(survivors[n%2], c, n)
		}
	}
	killed := time.Now()
	ds[victim].Kill9()
	for n := 6; n < 10; n++ {
		for _, c := range chats {
			send(survivors[n%2], c, n)
		}
	}
	// takeover: the first reply for the victim's chat after the kill
	var took time.Duration
	daemontest.WaitFor(t, func() bool {
		_, order := allReplies(t, survivors[0])
		mu.Lock()
		defer mu.Unlock()
		if len(order[chats[0]]) > 3 {
			took = time.Since(killed)
			return true
		}
		return false
	}, 60*time.Second, "the victim's chat answered again")
	t.Logf("takeover after kill -9: first reply %.2fs after the kill (lease_ttl %s)", took.Seconds(), testTTL)
	if took > testTTL+3*time.Second+time.Second {
		t.Errorf("takeover took %s, goal lease_ttl + 3s (+1s for the turn) = %s", took, testTTL+4*time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	waitAll(t, survivors[0], sent, 90*time.Second)
	checkAnswered(t, survivors[1], sent)
	if n := len(survivors[0].Events(chats[0], "adopt", "")) + len(survivors[1].Events(chats[0], "adopt", "")); n == 0 {
		t.Errorf("no survivor took over chat %s", chats[0])
	}
}

// An owner paused (SIGSTOP) past its lease loses the chat: another node
// answers it; when the paused node runs again (SIGCONT) it writes nothing
// for the chat (the store refuses: fenced), stops the chat's agent, and no
// message is answered twice.
func TestClusterPausedOwnerFenced(t *testing.T) {
	_, ds := startNodes(t, 3, nil)
	chat := "paused-chat"
	sent := map[string][]string{}
	sent[chat] = append(sent[chat], ds[0].Send(chat, "warm up"))
	waitAll(t, ds[0], sent, 30*time.Second)
	owner := adopters(ds, chat)[0]
	other := ds[(owner+1)%3]
	// a slow turn in flight at the owner, then the owner stops dead
	sent[chat] = append(sent[chat], other.Send(chat, "slow SLEEP=3s"))
	other.WaitMessage(sent[chat][1], "inflight", 10*time.Second)
	ds[owner].Signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			ds[owner].Signal(syscall.SIGCONT)
		}
	}()
	for i := range 3 {
		sent[chat] = append(sent[chat], other.Send(chat, fmt.Sprintf("while paused #%d", i)))
	}
	waitAll(t, other, sent, 30*time.Second)
	newOwner := -1
	for i, d := range ds {
		if i != owner && len(d.Events(chat, "adopt", "")) > 0 {
			newOwner = i
		}
	}
	if newOwner < 0 {
		t.Fatalf("no other node took the chat over")
	}
	// the paused node's agent watchdog killed its agent meanwhile
	// (TestClusterFrozenOwnersAgentStopped); the node comes back and must
	// not write for the chat
	time.Sleep(time.Second)
	ds[owner].Signal(syscall.SIGCONT)
	stopped = false
	daemontest.WaitFor(t, func() bool { return len(ds[owner].Events(chat, "lease_lost", "")) > 0 },
		15*time.Second, "the woken node dropping the chat")
	time.Sleep(2 * time.Second) // room for a stray write to show
	for i := range 3 {
		sent[chat] = append(sent[chat], ds[owner].Send(chat, fmt.Sprintf("after #%d", i)))
	}
	waitAll(t, ds[owner], sent, 30*time.Second)
	checkAnswered(t, ds[newOwner], sent)
	// what the woken node tried to write was refused by the fence
	logs := ds[owner].ManagerLog()
	if files, _ := filepath.Glob(filepath.Join(ds[owner].StateDir, "logs", "sessions", "*")); len(files) > 0 {
		for _, f := range files {
			b, _ := os.ReadFile(f)
			logs += string(b)
		}
	}
	t.Logf("writes the fence refused on the woken node: %d", strings.Count(logs, "fenced"))
	m := ds[owner].Message(sent[chat][1])
	answeredBy := ""
	for _, d := range ds {
		if len(d.Events(chat, "adopt", "")) > 0 {
			answeredBy += d.StateDir + " "
		}
	}
	if m.State != "done" || m.Attempts < 2 {
		t.Errorf("the slow message: %+v (want done on a second attempt at the new owner)", m)
	}
	_ = answeredBy
	_ = rand.IntN
}
