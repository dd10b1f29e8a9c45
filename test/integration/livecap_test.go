package integration

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// procSampler counts the daemon's live agent processes from /proc (every
// process carrying the daemon's marker, children included), over and over,
// until stopped: the cap is checked against the processes, not against the
// daemon's own figures.
type procSampler struct {
	stop    chan struct{}
	done    chan struct{}
	max     atomic.Int32
	samples atomic.Int32
}

func sampleProcs(d *daemontest.Daemon) *procSampler {
	p := &procSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			n := int32(len(d.Procs()))
			if n > p.max.Load() {
				p.max.Store(n)
			}
			p.samples.Add(1)
			select {
			case <-p.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *procSampler) finish() (max, samples int) {
	close(p.stop)
	<-p.done
	return int(p.max.Load()), int(p.samples.Load())
}

// metric reads one sample of a metric from GET /metrics ("" labels: the
// unlabelled sample); -1 when absent.
func metric(t *testing.T, d *daemontest.Daemon, name, labels string) float64 {
	t.Helper()
	code, body := d.Get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	series := name
	if labels != "" {
		series += "{" + labels + "}"
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(string(body))
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestLiveCapBurst: a burst of 50 new chats with max_live 5 never has more
// than 5 agent processes alive (counted from /proc throughout), and every
// message is answered; the agents that made room were hibernated.
func TestLiveCapBurst(t *testing.T) {
	const chats, maxLive = 50, 5
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{"sessions.max_live": maxLive})))
	ps := sampleProcs(d)
	ids := make([]string, chats)
	var wg sync.WaitGroup
	for i := range chats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = d.Send(fmt.Sprintf("burst-%02d", i), "SLEEP=200ms hello "+strconv.Itoa(i))
		}()
	}
	wg.Wait()
	sawWaiting := false
	for i, id := range ids {
		d.WaitFor(func() bool {
			if !sawWaiting {
				for _, s := range d.Status().Sessions {
					if s.State == "waiting" && s.Healthy && s.HealthReason == "live_cap" {
						sawWaiting = true
					}
				}
			}
			return d.Message(id).State == "done"
		}, 60*time.Second, fmt.Sprintf("burst-%02d's message to be done", i))
	}
	max, samples := ps.finish()
	t.Logf("%d process samples; at most %d agents alive at once", samples, max)
	if max > maxLive {
		t.Errorf("%d agent processes alive at once, over max_live %d", max, maxLive)
	}
	if samples < 20 {
		t.Errorf("only %d samples of the process table", samples)
	}
	if !sawWaiting {
		t.Errorf("no session was ever seen waiting (healthy, live_cap)")
	}
	if pids := distinctPids(d); pids < chats {
		t.Errorf("%d agent processes ran, want at least %d (one per chat)", pids, chats)
	}
	hib := metric(t, d, "dispatch_hibernations_total", "")
	if hib < chats-maxLive {
		t.Errorf("dispatch_hibernations_total = %v, want at least %d", hib, chats-maxLive)
	}
	hibernated := 0
	for _, s := range d.Status().Sessions {
		if s.StopReason == "hibernated" {
			hibernated++
			if s.State != "stopped" || !s.Healthy || s.SessionID == "" {
				t.Errorf("hibernated session %+v: want stopped, healthy, session_id kept", s)
			}
		}
	}
	if hibernated < chats-maxLive {
		t.Errorf("%d sessions show stop_reason hibernated, want at least %d", hibernated, chats-maxLive)
	}
	if w := metric(t, d, "dispatch_sessions_waiting", ""); w != 0 {
		t.Errorf("dispatch_sessions_waiting = %v after the burst, want 0", w)
	}
}

func distinctPids(d *daemontest.Daemon) int {
	seen := map[int]bool{}
	for _, iv := range d.Invocations() {
		seen[iv.Pid] = true
	}
	return len(seen)
}

// TestLiveCapLeastRecentlyActive: at the cap, the session hibernated for a
// new chat is the least recently active idle one.
func TestLiveCapLeastRecentlyActive(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{"sessions.max_live": 3})))
	for _, c := range []string{"a", "b", "c"} {
		d.WaitMessage(d.Send(c, "hi "+c), "done", 15*time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	d.WaitMessage(d.Send("a", "a again"), "done", 15*time.Second) // order now: b, c, a
	time.Sleep(50 * time.Millisecond)

	d.WaitMessage(d.Send("d", "hi d"), "done", 15*time.Second)
	if s := d.MustSession("b"); s.State != "stopped" || s.StopReason != "hibernated" {
		t.Fatalf("b (least recently active) after d started: %s/%s, want stopped/hibernated", s.State, s.StopReason)
	}
	for _, c := range []string{"a", "c", "d"} {
		if s := d.MustSession(c); !s.Alive {
			t.Errorf("%s is not alive after d started: %+v", c, s)
		}
	}
	d.WaitMessage(d.Send("e", "hi e"), "done", 15*time.Second)
	if s := d.MustSession("c"); s.StopReason != "hibernated" {
		t.Fatalf("c (next least recently active) after e started: %s/%s", s.State, s.StopReason)
	}
	if s := d.MustSession("a"); !s.Alive {
		t.Errorf("a (recently active) was hibernated: %+v", s)
	}
	if ev := d.Events("b", "hibernate", ""); len(ev) != 1 {
		t.Errorf("lifecycle hibernate lines for b: %v", ev)
	}
}

// TestLiveCapWaitsForTurn: with every slot busy, a new chat waits (state
// waiting, healthy, reason live_cap); when a turn ends, the session that
// finished is hibernated and the waiting chats start in the order of their
// oldest message.
func TestLiveCapWaitsForTurn(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{"sessions.max_live": 2})))
	long := d.Send("long", "SLEEP=4s long turn")
	short := d.Send("short", "SLEEP=1500ms short turn")
	d.WaitMessage(long, "inflight", 10*time.Second)
	d.WaitMessage(short, "inflight", 10*time.Second)

	first := d.Send("first", "waiting first")
	time.Sleep(50 * time.Millisecond)
	second := d.Send("second", "waiting second")
	d.WaitFor(func() bool {
		f, ok1 := d.Session("first")
		s, ok2 := d.Session("second")
		return ok1 && ok2 && f.State == "waiting" && s.State == "waiting"
	}, 5*time.Second, "first and second to wait")
	for _, c := range []string{"first", "second"} {
		s := d.MustSession(c)
		if !s.Healthy || s.HealthReason != "live_cap" || s.Alive {
			t.Errorf("%s: %+v; want healthy, reason live_cap, not alive", c, s)
		}
	}
	if w := metric(t, d, "dispatch_sessions_waiting", ""); w != 2 {
		t.Errorf("dispatch_sessions_waiting = %v, want 2", w)
	}
	if n := len(d.Procs()); n != 2 {
		t.Errorf("%d agent processes while two wait, want 2", n)
	}

	fm := d.WaitMessage(first, "done", 15*time.Second)
	sm := d.WaitMessage(second, "done", 15*time.Second)
	if d.Message(long).State != "inflight" {
		t.Errorf("long's turn ended before the waiting chats were served; the test proves nothing")
	}
	if !strings.Contains(fm.Reply, "waiting first") || !strings.Contains(sm.Reply, "waiting second") {
		t.Errorf("replies %q, %q", fm.Reply, sm.Reply)
	}
	if s := d.MustSession("short"); s.StopReason != "hibernated" {
		t.Errorf("short after its turn: %s/%s, want hibernated", s.State, s.StopReason)
	}
	var starts []string
	for _, e := range d.Lifecycle() {
		if e.Event == "start" && (e.Chat == "first" || e.Chat == "second") {
			starts = append(starts, e.Chat)
		}
	}
	if !slices.Equal(starts, []string{"first", "second"}) {
		t.Errorf("start order %v, want first, second (oldest message first)", starts)
	}
	d.WaitMessage(long, "done", 15*time.Second)
}

// TestLiveCapExemptNeverHibernated: exempt sessions (master, -bg, flagged)
// hold their slots; a new chat waits rather than hibernate them, and
// starts once an operator frees a slot.
func TestLiveCapExemptNeverHibernated(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{
		"sessions.max_live":     3,
		"health.check_interval": "200ms", "health.first_check_delay": "100ms",
	})))
	for _, c := range []string{"master", "x-bg", "flagged"} {
		d.WaitMessage(d.Send(c, "hi "+c), "done", 15*time.Second)
	}
	if _, _, code := d.Run("sessions", "exempt", "flagged"); code != 0 {
		t.Fatal("sessions exempt flagged failed")
	}
	id := d.Send("plain", "let me in")
	d.WaitFor(func() bool { s, ok := d.Session("plain"); return ok && s.State == "waiting" }, 5*time.Second, "plain to wait")
	time.Sleep(1500 * time.Millisecond) // several health checks
	for _, c := range []string{"master", "x-bg", "flagged"} {
		if s := d.MustSession(c); !s.Alive || s.StopReason != "" {
			t.Errorf("exempt %s: %+v", c, s)
		}
	}
	if s := d.MustSession("plain"); s.State != "waiting" || !s.Healthy || s.HealthReason != "live_cap" {
		t.Errorf("plain: %+v, want waiting, healthy, live_cap", s)
	}
	if d.Message(id).State != "pending" {
		t.Errorf("plain's message: %s, want pending", d.Message(id).State)
	}
	if _, _, code := d.Run("sessions", "kill", "flagged"); code != 0 {
		t.Fatal("sessions kill flagged failed")
	}
	d.WaitMessage(id, "done", 15*time.Second)
	if s := d.MustSession("flagged"); s.StopReason != "killed" {
		t.Errorf("flagged after kill: %s/%s", s.State, s.StopReason)
	}
	for _, c := range []string{"master", "x-bg", "flagged"} {
		if ev := d.Events(c, "hibernate", ""); len(ev) != 0 {
			t.Errorf("exempt %s was hibernated: %v", c, ev)
		}
	}
}

// TestHibernatedChatResumes: a hibernated chat's next message resumes its
// conversation (--resume with the same id, history intact).
func TestHibernatedChatResumes(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{"sessions.max_live": 1})))
	d.WaitMessage(d.Send("alice", "my name is Alice"), "done", 15*time.Second)
	a := d.MustSession("alice")
	d.WaitMessage(d.Send("bob", "hello from bob"), "done", 15*time.Second)
	if s := d.MustSession("alice"); s.StopReason != "hibernated" || s.SessionID != a.SessionID {
		t.Fatalf("alice after bob: %+v; want hibernated, session_id %s kept", s, a.SessionID)
	}
	r := d.WaitMessage(d.Send("alice", "what is my name?"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "(turn 2)") {
		t.Errorf("alice's reply %q: want turn 2 of the same conversation", r.Reply)
	}
	ivs := d.InvocationsFor(a.SessionID)
	if len(ivs) != 2 || ivs[1].Resume() != a.SessionID {
		t.Errorf("invocations for %s: %+v; want a new one, then --resume", a.SessionID, ivs)
	}
	if h := d.Conversation(a.SessionID); !slices.Equal(h, []string{"my name is Alice", "what is my name?"}) {
		t.Errorf("alice's conversation %q", h)
	}
	if s := d.MustSession("bob"); s.StopReason != "hibernated" {
		t.Errorf("bob after alice came back: %s/%s", s.State, s.StopReason)
	}
}

// TestMemoryLimitRestart: an agent that grows past health.max_agent_rss is
// restarted with resume once its turn is over (reason memory, counted as a
// restart) and keeps its conversation; status shows its memory.
func TestMemoryLimitRestart(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{
		"health.max_agent_rss":   "64MiB",
		"health.memory_interval": "100ms",
	})))
	d.WaitMessage(d.Send("m", "first"), "done", 15*time.Second)
	before := d.MustSession("m")
	if before.RSSBytes == 0 || before.RSSBytes > 64<<20 {
		t.Errorf("rss_bytes of a fresh stub = %d", before.RSSBytes)
	}
	// Grows to ~100 MB, over 64 MiB but under twice that, mid-turn: the
	// turn must finish first.
	g := d.WaitMessage(d.Send("m", "GROW=100MB SLEEP=1s then answer"), "done", 15*time.Second)
	if !strings.Contains(g.Reply, "(turn 2)") {
		t.Errorf("the growing turn's reply %q", g.Reply)
	}
	d.WaitFor(func() bool { return len(d.Events("m", "restart", "memory")) > 0 }, 10*time.Second, "a memory restart")
	ev := d.Events("m", "restart", "memory")[0]
	if !strings.Contains(ev.Reason, "MiB") {
		t.Errorf("restart reason %q does not give the figure", ev.Reason)
	}
	d.WaitFor(func() bool { s := d.MustSession("m"); return s.Alive && s.Pid != before.Pid }, 10*time.Second, "m's new agent")
	s := d.MustSession("m")
	if s.Restarts < 1 || s.SessionID != before.SessionID {
		t.Errorf("after the memory restart: %+v; want restarts ≥ 1, session %s", s, before.SessionID)
	}
	if s.RSSBytes == 0 || s.RSSBytes > 64<<20 {
		t.Errorf("rss_bytes after the restart = %d", s.RSSBytes)
	}
	r := d.WaitMessage(d.Send("m", "still there?"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "(turn 3)") {
		t.Errorf("reply after the restart %q, want turn 3 of the same conversation", r.Reply)
	}
	ivs := d.InvocationsFor(before.SessionID)
	if len(ivs) < 2 || ivs[len(ivs)-1].Resume() != before.SessionID {
		t.Errorf("invocations: %+v; want the restart to --resume %s", ivs, before.SessionID)
	}
	if n := metric(t, d, "dispatch_restarts_total", `reason="memory"`); n < 1 {
		t.Errorf(`dispatch_restarts_total{reason="memory"} = %v`, n)
	}
	d.WaitFor(func() bool {
		return metric(t, d, "dispatch_agent_rss_bytes", `stat="max"`) > 0 && metric(t, d, "dispatch_agent_rss_bytes", `stat="sum"`) > 0
	}, 5*time.Second, "dispatch_agent_rss_bytes sum and max to be sampled")
	if !strings.Contains(d.ManagerLog(), "agent over its memory limit") {
		t.Errorf("manager log has no line about the memory limit")
	}
}

// TestMemoryKillMidTurn: an agent over twice the limit is killed at once,
// even mid-turn; the turn fails like a crash, so a message that makes every
// agent balloon ends as a dead letter — and the chat goes on.
func TestMemoryKillMidTurn(t *testing.T) {
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{
		"health.max_agent_rss":   "32MiB",
		"health.memory_interval": "100ms",
	})))
	d.WaitMessage(d.Send("k", "hello"), "done", 15*time.Second)
	sid := d.MustSession("k").SessionID
	start := time.Now()
	bad := d.WaitMessage(d.Send("k", "GROW=100MB SLEEP=20s balloon"), "dead", 20*time.Second)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("two killed attempts took %s: not killed at once", took)
	}
	if !strings.Contains(bad.Error, "memory") || bad.Attempts != 2 {
		t.Errorf("dead message: attempts %d, error %q", bad.Attempts, bad.Error)
	}
	if ev := d.Events("k", "restart", "memory"); len(ev) < 2 {
		t.Errorf("memory restarts: %v", ev)
	}
	r := d.WaitMessage(d.Send("k", "after"), "done", 15*time.Second)
	if !strings.Contains(r.Reply, "(turn 2)") {
		t.Errorf("reply after the kills %q, want turn 2 of the same conversation", r.Reply)
	}
	if s := d.MustSession("k"); s.SessionID != sid {
		t.Errorf("session id changed: %s → %s", sid, s.SessionID)
	}
}
