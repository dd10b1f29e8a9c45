package integration

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// spawnChild makes every agent start a grandchild (`sleep 1000` in its
// process group holding its stdout and stderr).
var spawnChild = map[string]any{"agent.env.STUB_SPAWN_CHILD": "1"}

// TestSIGTERM: with several live sessions whose agents each have a
// grandchild and a turn in flight, SIGTERM makes the daemon let the turn
// finish, stop every agent and exit 0 within the shutdown timeout, leaving
// no process with its state dir in the environment. The next daemon resumes
// the sessions.
func TestSIGTERM(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, spawnChild)))
	chats := []string{"a", "b", "c"}
	for _, c := range chats {
		d.WaitMessage(d.Send(c, "hi "+c), "done", 15*time.Second)
	}
	slow := d.Send("d", "SLEEP=1500ms slow one")
	d.WaitMessage(slow, "inflight", 10*time.Second)
	d.WaitFor(func() bool { return len(d.ChildPids()) == 4 }, 5*time.Second, "4 grandchildren")

	procs := d.Procs()
	if len(procs) != 8 {
		t.Errorf("live processes of this state dir: %d, want 4 agents + 4 grandchildren: %v", len(procs), procs)
	}
	agents := map[string]int{}
	for _, c := range append(chats, "d") {
		s := d.MustSession(c)
		agents[c] = s.Pid
		if !daemontest.Alive(s.Pid) {
			t.Errorf("%s: agent %d not alive", c, s.Pid)
		}
	}

	code, took := d.Term()
	t.Logf("daemon exited %d %s after SIGTERM", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > 5*time.Second+2*time.Second {
		t.Errorf("shutdown took %s; shutdown_timeout is 5s", took)
	}
	if left := d.WaitNoProcs(2 * time.Second); len(left) != 0 {
		t.Errorf("processes outlived the daemon: %v", left)
	}
	for c, pid := range agents {
		if daemontest.Alive(pid) {
			t.Errorf("%s: agent %d still alive", c, pid)
		}
	}
	for _, pid := range d.ChildPids() {
		if daemontest.Alive(pid) {
			p, _ := daemontest.ReadProc(pid)
			t.Errorf("grandchild still alive: %v", p)
		}
	}
	if !strings.Contains(d.Output(), "dispatch daemon stopped") {
		t.Errorf("no clean-stop line in the daemon's output")
	}

	// The in-flight turn was allowed to finish; the sessions come back.
	d.Restart()
	if m := d.Message(slow); m.State != "done" {
		t.Errorf("in-flight message at SIGTERM: %s (error %q), want done", m.State, m.Error)
	}
	for _, c := range chats {
		sid := d.MustSession(c).SessionID
		if !daemontest.Poll(func() bool {
			ivs := d.InvocationsFor(sid)
			return len(ivs) == 2 && ivs[1].Resume() == sid
		}, 10*time.Second) {
			t.Errorf("%s: invocations %+v, want a --resume %s after the restart", c, d.InvocationsFor(sid), sid)
		}
	}
	r := d.WaitMessage(d.Send("a", "again"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "again (turn 2)") {
		t.Errorf("reply %q, want turn 2", r.Reply)
	}
}

// TestSIGKILL: kill -9 of the daemon leaves no agent behind (the kernel
// kills them: Pdeathsig); a message in flight at that moment is answered by
// the next daemon, and live sessions are resumed. Grandchildren may survive
// a kill -9; the test reports what it sees but asserts only the agents.
func TestSIGKILL(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, spawnChild)))
	for _, c := range []string{"a", "b"} {
		d.WaitMessage(d.Send(c, "hi "+c), "done", 15*time.Second)
	}
	inflight := d.Send("c", "SLEEP=3s in flight")
	d.WaitMessage(inflight, "inflight", 10*time.Second)
	d.WaitFor(func() bool { return len(d.ChildPids()) == 3 }, 5*time.Second, "3 grandchildren")
	agents := map[string]int{}
	sids := map[string]string{}
	for _, c := range []string{"a", "b", "c"} {
		s := d.MustSession(c)
		agents[c], sids[c] = s.Pid, s.SessionID
	}
	children := d.ChildPids()

	d.Kill9()
	start := time.Now()
	for c, pid := range agents {
		d.WaitFor(func() bool { return !daemontest.Alive(pid) }, 3*time.Second, "agent of "+c+" to die with the daemon")
	}
	t.Logf("all agents gone %s after kill -9 of the daemon", time.Since(start).Round(time.Millisecond))
	var survivors []string
	for _, pid := range children {
		if p, ok := daemontest.ReadProc(pid); ok && daemontest.Alive(pid) {
			survivors = append(survivors, p.String())
		}
	}
	t.Logf("grandchildren surviving the kill -9: %d of %d %v", len(survivors), len(children), survivors)
	if left := d.Procs(); len(left) != len(survivors) {
		t.Errorf("processes left: %v; want only the surviving grandchildren", left)
	}

	d.Restart()
	m := d.WaitMessage(inflight, "done", 20*time.Second)
	if !strings.Contains(m.Reply, "in flight") {
		t.Errorf("reply %q", m.Reply)
	}
	for _, c := range []string{"a", "b"} {
		if !daemontest.Poll(func() bool {
			return slices.ContainsFunc(d.InvocationsFor(sids[c]), func(iv daemontest.Invocation) bool { return iv.Resume() == sids[c] })
		}, 10*time.Second) {
			t.Errorf("%s: no --resume %s after the restart: %+v", c, sids[c], d.InvocationsFor(sids[c]))
		}
	}
	var old []int
	for _, pid := range children {
		if daemontest.Alive(pid) {
			old = append(old, pid)
		}
	}
	t.Logf("grandchildren of the killed daemon's agents still alive after the restart: %v", old)
	if s := d.Status(); s.Queue.Pending != 0 || s.Queue.Inflight != 0 || s.Queue.Dead != 0 {
		t.Errorf("queue after recovery: %+v", s.Queue)
	}
}
