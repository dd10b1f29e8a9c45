package supervisor

import (
	"context"
	"fmt"
	"github.com/dispatchd/dispatch/internal/agent/fake"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

// Out of file descriptors, every session's agent start fails: that is the
// daemon's problem. No session spends its restart budget on it or fails;
// the daemon's health says so; once descriptors are free again every
// message is answered.
func TestDaemonResourceErrorsAreNotTheSessions(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.SetStartErr(fmt.Errorf("claude: pipes: %w", &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}))
	var ids []string
	for i := range 20 {
		ids = append(ids, h.send(fmt.Sprint("c", i), "hello"))
	}
	h.runUntil("every session tried a few times", time.Minute, func() bool { return len(h.ag.Starts()) >= 20*4 })
	for i := range 20 {
		s := h.snap(fmt.Sprint("c", i))
		if s.State == session.Failed || s.Restarts != 0 {
			t.Fatalf("session c%d charged for the daemon's own error: %+v", i, s)
		}
	}
	st, err := h.sup.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon.ResourceError == "" || st.Daemon.Healthy {
		t.Fatalf("daemon status does not report its resource error: %+v", st.Daemon)
	}
	h.ag.SetStartErr(nil)
	for _, id := range ids {
		h.runUntil("answered once descriptors are free", time.Minute, func() bool { return h.msg(id).State == store.Done })
	}
	h.clk.Advance(DaemonErrorWindow + time.Second)
	if st, _ := h.sup.Status(t.Context()); st.Daemon.ResourceError != "" || !st.Daemon.Healthy {
		t.Fatalf("daemon still reported unhealthy after the error passed: %+v", st.Daemon)
	}
}

// An agent that ends cleanly after each answer is not broken: each exit is
// a plain restart, and a successful turn clears the restart history, so
// crashes far apart never add up to a failed session.
func TestCleanExitsAndSuccessesNeverFailTheSession(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 5 {
		h.waitMsg(h.send("eve", fmt.Sprint("m", i)), store.Done)
		gen := h.snap("eve").Gen
		p := h.ag.Process("eve")
		if p == nil {
			t.Fatal("no live agent")
		}
		_ = p.Stop(t.Context()) // exits with status 0, after answering
		h.eventually("a new agent", func() bool { s := h.snap("eve"); return s.Gen > gen && s.ProcUp })
	}
	if s := h.snap("eve"); s.State == session.Failed {
		t.Fatalf("clean exits after answering failed the session: %+v", s)
	}
	for i := range 5 {
		h.ag.CrashNext()
		id := h.send("eve", fmt.Sprint("crash ", i))
		h.eventually("answered after the crash", func() bool {
			h.clk.Advance(5 * time.Second) // the restart's backoff
			return h.msg(id).State == store.Done
		})
	}
	if s := h.snap("eve"); s.State == session.Failed {
		t.Fatalf("crashes each followed by a success failed the session: %+v", s)
	}
}

// An agent that exits with status 0 right after its answer — the exit may
// be noticed before the answer is — is started again plainly: never a
// counted restart (found by the model test, op exit0-next).
func TestCleanExitRightAfterAnAnswerIsNotCounted(t *testing.T) {
	h := newHarness(t, nil)
	h.waitMsg(h.send("eve", "hello"), store.Done)
	for i := range 20 {
		gen := h.snap("eve").Gen
		h.ag.Exit0Next()
		h.waitMsg(h.send("eve", fmt.Sprint("m", i)), store.Done)
		h.eventually("a new agent", func() bool { s := h.snap("eve"); return s.ProcUp && s.Gen > gen })
	}
	if s := h.snap("eve"); s.Restarts != 0 || s.State == session.Failed {
		t.Fatalf("clean exits after answering were counted: restarts %d, state %s", s.Restarts, s.State)
	}
}

// A probe whose agent exits before writing anything got no answer from the
// API: the outage goes on, and the held chat is not charged as if others
// were answered (found by the model test: a die-next hitting a probe).
func TestProbeThatExitsSilentlyIsNoAnswer(t *testing.T) {
	h := newHarness(t, nil)
	h.ag.Fail(agent.Outage, 1)
	id := h.send("kim", "x")
	h.eventually("api down", func() bool { return !h.sup.breaker.Up() })
	next := h.sup.breaker.Stats().NextProbe
	h.ag.DieNext()
	h.eventually("a probe was judged", func() bool {
		h.clk.Advance(time.Second)
		st := h.sup.breaker.Stats()
		return st.Up || st.NextProbe.After(next)
	})
	if h.sup.breaker.Up() {
		t.Fatal("a probe whose agent exited before writing anything closed the breaker")
	}
	h.eventually("answered once a probe gets through", func() bool {
		h.clk.Advance(time.Second)
		return h.msg(id).State == store.Done
	})
	if m := h.msg(id); m.Failures != 0 {
		t.Fatalf("held message charged: %+v", m)
	}
}

// callsOf counts chat's turns so far, and whether the last is in flight.
func callsOf(ag interface{ Calls(int) []fake.Call }, chat string) (n int, inFlight bool) {
	for _, c := range ag.Calls(0) {
		if c.Chat == chat {
			n, inFlight = n+1, !c.Ended
		}
	}
	return n, inFlight
}

// An outage that begins while a turn is in flight is the API's, however
// many chats were answered earlier in that turn: the turn is held, not
// charged — twice in a row — and each retry sends only the note (found by
// the fault hunt: both failures charged, the message dead after two
// attempts, and the whole message sent again).
func TestOutageThatStartsMidTurnIsNotTheChats(t *testing.T) {
	h := newHarness(t, nil)
	h.stop()
	h.sup = New(h.cfg, h.st, keeper{h.ag}, h.clk, h.logs)
	if err := h.sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.ag.SetDirectives(false)
	h.waitMsg(h.send("busy", "warm"), store.Done)
	h.waitMsg(h.send("slow", "warm"), store.Done)
	h.ag.SetChatDelay("slow", 10*time.Second)
	id := h.send("slow", "slow question")
	for round := range 2 {
		h.eventually("slow's turn in flight", func() bool { _, busy := callsOf(h.ag, "slow"); return busy })
		h.clk.Advance(time.Second)
		h.waitMsg(h.send("busy", fmt.Sprint("answered before the outage, round ", round)), store.Done)
		h.clk.Advance(time.Second)
		h.ag.OutageMidTurn(1000) // the API goes down for everyone, mid-turn
		h.clk.Advance(8 * time.Second)
		h.eventually("the API taken for down", func() bool { return !h.sup.breaker.Up() })
		h.eventually("the turn judged", func() bool { return h.msg(id).State == store.Pending })
		if m := h.msg(id); m.Failures != 0 || m.KeptIn == "" {
			t.Fatalf("round %d: a turn cut by an outage that began mid-turn was charged (or not kept): %+v", round, m)
		}
		n, _ := callsOf(h.ag, "slow")
		h.ag.Fail(agent.Outage, 0) // the outage ends: the next probe gets through
		h.fire(2 * time.Second)
		h.eventually("the held turn retried", func() bool { m, busy := callsOf(h.ag, "slow"); return m > n && busy })
	}
	h.clk.Advance(10 * time.Second)
	if m := h.waitMsg(id, store.Done); m.Failures != 0 {
		t.Fatalf("answered after two outages, charged: %+v", m)
	}
	var sent []string
	for _, turn := range h.ag.TurnsFor("slow") {
		sent = append(sent, turn.Texts...)
	}
	if n := strings.Count(strings.Join(sent, "|"), "slow question"); n != 1 {
		t.Fatalf("the held text reached the conversation %d times, want once: %q", n, sent)
	}
	if sent[len(sent)-1] != session.RetryNote || sent[len(sent)-2] != session.RetryNote {
		t.Fatalf("retries sent %q, want the retry note each time", sent)
	}
}

// An agent that never reads its input (exec sleep 100000): its turn never
// reached it, so the messages go back in line uncharged and the agent is
// restarted as broken — while other chats are answered, and with nobody
// else running, where the silence must not be taken for an API outage
// that holds the message (found by the fault hunt: charged and dead, or
// held indefinitely).
func TestAgentThatNeverReadsIsTheAgents(t *testing.T) {
	for _, others := range []bool{false, true} {
		t.Run(fmt.Sprint("others answered=", others), func(t *testing.T) {
			h := newHarness(t, nil)
			if others {
				h.waitMsg(h.send("busy", "warm"), store.Done)
			}
			h.ag.SetDeaf("deaf", true)
			id := h.send("deaf", "hello")
			h.eventually("the turn handed over", func() bool { _, busy := callsOf(h.ag, "deaf"); return busy })
			if others {
				h.clk.Advance(time.Minute)
				h.waitMsg(h.send("busy", "answered meanwhile"), store.Done)
			}
			h.clk.Advance(31 * time.Minute) // past the first turn's stuck timeout
			h.sup.Check(context.Background())
			h.eventually("the agent restarted", func() bool { return h.snap("deaf").Restarts >= 1 })
			if m := h.msg(id); m.Failures != 0 || m.State == store.Dead {
				t.Fatalf("a turn its agent never read was charged: %+v", m)
			}
			if st := h.sup.breaker.Stats(); !st.Up || st.Outages != 0 {
				t.Fatalf("an agent that never reads was taken for an API outage: %+v", st)
			}
			h.ag.SetDeaf("deaf", false)
			// the restarted agent may have been handed the turn before it
			// began to read: it is given up on again like the first
			h.eventually("a turn handed over", func() bool { _, busy := callsOf(h.ag, "deaf"); return busy || h.msg(id).State == store.Done })
			h.clk.Advance(31 * time.Minute)
			h.sup.Check(context.Background())
			h.runUntil("answered by an agent that reads", time.Minute, func() bool { return h.msg(id).State == store.Done })
			if m := h.msg(id); m.Failures != 0 {
				t.Fatalf("charged: %+v", m)
			}
		})
	}
}
