package supervisor

// Model-based test of the supervisor's central promise: every accepted
// message is answered or dead-lettered exactly once, in its chat's order;
// none is ever left waiting with nothing scheduled to hand it over, and none
// is lost, answered out of order or answered for another chat.
//
// Each seed generates a random sequence of operations over a few chats —
// sends (some poison: ERROR, CRASH, HANG, TOOLONG, DIE, NOCONV; some
// answered and then followed by a stray result, EXTRA, or a clean exit,
// EXIT0), injected transient faults (an error result, one that merely
// mentions "No conversation found", a crash, a hang, an exit before any
// output, an API outage that ends later, one that begins while turns are in
// flight, an API that hangs for everyone, a sticky outage-type error of one
// chat only, an agent that never reads its input, agents that cannot start,
// for a reason of their own or for want of the daemon's descriptors), processes
// dying on their own, operator actions, clean and crash restarts of the
// daemon, fake-clock advances and health checks, turns that ask for
// permission to use a tool and a person who answers them (allow, always,
// deny) or nobody who does — and runs it against the
// real supervisor, sessions, breaker and SQLite store with the in-process
// fake agent. docs/faults.md says who is to blame for each.
//
// Everything runs in a testing/synctest bubble: synctest.Wait returns once
// every goroutine of the daemon (actors, turns, breaker, store writer) is
// blocked on something only the test can change (an operation, a clock
// advance). That is exact quiescence, without sleeps or polling; the
// invariants are checked at that point after every operation:
//
//   - pending-while-idle: a chat with pending messages has a turn in flight,
//     a restart scheduled, or holds them on purpose (failed, waiting for the
//     API gate); an idle or stopped session with waiting messages and
//     nothing scheduled is the bug class this test exists for. It is
//     checked before any clock advance lets the health check's stale_queue
//     safety net hide it.
//   - stranded-inflight: an inflight message belongs to a session with a
//     turn in flight.
//   - held-unregistered: every session waiting for the API gate is among
//     the breaker's waiters (or nothing would wake it).
//   - lost / done-regressed / poison-answered.
//   - asking-orphan / asking-past-expiry: an open permission request
//     belongs to a chat whose turn is in flight, and is closed by its
//     expiry (not checked once the disk was full: a close that failed
//     stays open until the next start expires it).
//   - charged-innocent: no message is charged for a failure it did not
//     cause. The fake agent logs every turn: its messages, when it started
//     and ended, how, and which injected fault hit it. From that log the
//     model counts, per message, the turns it was in that ended in a way
//     the fault model may charge (session.Decide; a turn's messages are
//     charged together): an error result of the turn's own (ERROR, NOCONV,
//     fail-next, noconv-next), a too long context, a crash during the turn
//     — always; an exit before any output — only for a message that was in
//     such a turn before; an outage-type error (sticky, outage) or a silent
//     turn cancelled as stuck (HANG, hang-next, hang-api) — only if another
//     chat or a probe got an answer between the turn's start (for a turn an
//     outage cut mid-turn, outage-mid: the outage's start; or the end of
//     the chat's first outage-like failure since its last answer, if
//     earlier) and the moment its session judged it (the first quiescent
//     moment after its end at which the session is not retrying a store
//     write); never a result, a turn stopped on purpose or a turn its agent
//     never read (deaf). Every window is
//     taken wider than the session's, never narrower. A message's Failures
//     must never exceed that count (checked for the messages not done at
//     every step, for all at the end; an operator retry starts it at 0), so
//     a message no fault could reach has Failures 0.
//   - held-by-another: no chat is held because of another chat's failure.
//     A quiet period is a stretch, with one daemon, in which no fault that
//     can hit any chat's turn or a probe is armed or still in a turn it hit
//     (pending fail/crash/hang/die-next, outage, hang-api, start errors):
//     only per-chat sticky errors and the messages' own directives. In a
//     quiet period every probe is answered, so (a) the API is never taken
//     for down longer than a probe interval: past the probe scheduled when
//     the period began (ProbeMax, +20% jitter, +1 s) or, once seen up in
//     the period, past ProbeMin (+20%, +1 s) after it went down — no chat
//     waits at the gate for an outage longer than that; and (b) the breaker
//     opens at most once per chat plus once per answer a chat got in the
//     period: a chat's outage-type failure or silent turn is put down to the
//     API only if nobody else was answered since its last such failure, and
//     the breaker closes only on an answer, so one chat's sticky errors
//     cannot open it again and again and hold everyone (pacing after an
//     outage, bounded by the backlog's own turns, is not bounded here).
//   - daemon-error-charged: an agent start that failed for want of the
//     daemon's own resources (EMFILE) never counts against the session's
//     restart budget; clean-exit-counted: an agent that exits with status 0
//     after answering is started again plainly, never as a counted restart
//     (both judged from the lifecycle events as they happen).
//
// After the operations a settle phase removes every fault, restarts failed
// sessions as an operator would, and alternates clock advances (past stuck
// timeouts, backoffs and probe delays) with health checks until every
// message is done or dead. Then: nothing pending or inflight
// (not-settled), each chat's first deliveries to the agent follow
// acceptance order (order), and every reply belongs to its own message and
// chat (reply).
//
// Run:
//
//	go test ./internal/supervisor -run TestModel              # the CI seeds
//	go test ./internal/supervisor -run TestModel -seed 17     # replay one seed
//	go test ./internal/supervisor -run TestModel -seeds 500   # random seeds
//
// A failure prints its seed, the replay command, the generated operations,
// what each did, the message table and the tail of the daemon's logs.
// A seed replays the same operations (for this version of opSpecs: a new
// entry or weight reshuffles every seed); the daemon's goroutines still
// interleave as the scheduler decides (race ops, the breaker's jitter), so
// a rare interleaving may need a few runs.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/agent/fake"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
)

var (
	modelSeed  = flag.Int64("seed", -1, "TestModel: run only this seed")
	modelSeeds = flag.Int("seeds", 0, "TestModel: run this many random seeds instead of the CI set")
	modelOps   = flag.Int("ops", 60, "TestModel: operations per seed")
	modelTrace = flag.Bool("model.trace", false, "TestModel: log every seed's operations, also when it passes")
)

// modelCISeeds is how many fixed seeds (1..N) run by default.
const modelCISeeds = 30

func TestModel(t *testing.T) {
	var seeds []uint64
	switch {
	case *modelSeed >= 0:
		seeds = []uint64{uint64(*modelSeed)}
	case *modelSeeds > 0:
		for range *modelSeeds {
			seeds = append(seeds, rand.Uint64()%1_000_000_000)
		}
	default:
		for s := range modelCISeeds {
			seeds = append(seeds, uint64(s+1))
		}
	}
	byInvariant := map[string][]uint64{}
	failures := 0
	for _, seed := range seeds {
		var res modelResult
		verbose := failures < 5 // the first failures in full, the rest by seed
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { res = runModel(t, seed, *modelOps, verbose) })
		})
		if res.invariant != "" {
			failures++
			byInvariant[res.invariant] = append(byInvariant[res.invariant], seed)
		}
	}
	if len(byInvariant) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%d seeds run; failing seeds by invariant:\n", len(seeds))
		names := slices.Sorted(func(yield func(string) bool) {
			for k := range byInvariant {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range names {
			fmt.Fprintf(&b, "  %-20s %d seeds: %v\n", k, len(byInvariant[k]), byInvariant[k])
		}
		t.Log(b.String())
	}
}

// --- operations ---

type opKind string

// An op is one generated step. Its fields are fixed by the seed; choices
// that depend on the daemon's state (which dead message to retry) are
// made at run time from Pick and recorded in the trace.
type op struct {
	Kind opKind
	Chat string
	Text []string // sends: one text, or a burst sent back to back
	N    int
	D    time.Duration
	Pick int
}

func (o op) String() string {
	s := string(o.Kind)
	if o.Kind == "race" {
		s += " " + raceActions[o.N/10] + "+" + raceActions[o.N%10]
		o.N = 0
	}
	if o.Chat != "" {
		s += " " + o.Chat
	}
	if len(o.Text) > 0 {
		s += fmt.Sprintf(" %q", o.Text)
	}
	if o.N != 0 {
		s += fmt.Sprintf(" n=%d", o.N)
	}
	if o.D != 0 {
		s += " " + o.D.String()
	}
	if o.Pick != 0 {
		s += fmt.Sprintf(" pick=%d", o.Pick)
	}
	return s
}

// opSpec is one kind of operation: how often it is generated, how it is
// generated and what it does. Adding an operation is one entry here.
type opSpec struct {
	kind   opKind
	weight int
	gen    func(g *opGen) op
	apply  func(m *model, o op) string // returns what it did, for the trace
}

var opSpecs = []opSpec{
	{"send", 22, (*opGen).send, (*model).applySend},
	{"burst", 8, (*opGen).burst, (*model).applySend},
	{"fail-next", 4, withN(1, 2), func(m *model, o op) string { m.ag.Fail(agent.Fault, o.N); return "" }},
	{"crash-next", 4, withN(1, 2), func(m *model, o op) string { m.ag.Fail(agent.Exited, o.N); return "" }},
	{"hang-next", 2, plain, func(m *model, o op) string { m.ag.HangNext(); return "" }},
	{"outage", 3, withN(1, 3, 1000), func(m *model, o op) string { m.ag.Fail(agent.Outage, o.N); return "" }},
	{"outage-end", 3, plain, func(m *model, o op) string { m.ag.Fail(agent.Outage, 0); return "" }},
	{"start-err", 1, plain, func(m *model, o op) string { m.ag.SetStartErr(errors.New("model: cannot start")); return "" }},
	{"start-ok", 3, plain, func(m *model, o op) string { m.ag.SetStartErr(nil); return "" }},
	{"proc-exit", 3, (*opGen).chatOp, func(m *model, o op) string { return fmt.Sprint("had a process: ", m.ag.Crash(o.Chat)) }},
	{"kill", 3, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Kill(m.ctx(), o.Chat)) }},
	{"restart", 3, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Restart(m.ctx(), o.Chat, false)) }},
	{"restart-clean", 1, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Restart(m.ctx(), o.Chat, true)) }},
	{"slow", 3, (*opGen).slow, func(m *model, o op) string { m.ag.SetChatDelay(o.Chat, o.D); return "" }},
	{"race", 4, (*opGen).race, (*model).applyRace},
	{"strict-resume", 1, plain, func(m *model, o op) string { m.ag.SetStrictResume(true); return "" }},
	{"forget", 1, (*opGen).chatOp, (*model).applyForget},
	{"exempt", 1, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Exempt(m.ctx(), o.Chat, o.Pick%2 == 0)) }},
	{"retry-dead", 3, (*opGen).pick, (*model).applyRetry},
	{"drop-dead", 1, (*opGen).pick, (*model).applyDrop},
	{"advance", 12, (*opGen).advance, func(m *model, o op) string { m.advance(o.D); return "" }},
	{"check", 6, plain, func(m *model, o op) string { return m.check() }},
	{"daemon-restart", 2, plain, func(m *model, o op) string { m.daemonRestart(); return "" }},
	{"daemon-crash", 2, plain, func(m *model, o op) string { return m.daemonCrash() }},
	{"pause", 2, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Pause(m.ctx(), o.Chat)) }},
	{"resume", 3, (*opGen).chatOp, func(m *model, o op) string { return errText(m.sup.Resume(m.ctx(), o.Chat)) }},
	{"store-fail", 2, plain, (*model).applyStoreFail},
	{"store-ok", 3, plain, (*model).applyStoreOK},
	// The faults of "Blame the right party" (docs/faults.md).
	{"noconv-next", 2, withN(1, 2), func(m *model, o op) string {
		m.ag.FailMsg(agent.Fault, o.N, "Tool ticket_lookup: No conversation found for ticket #4711")
		return ""
	}},
	{"extra-next", 2, plain, func(m *model, o op) string { m.ag.ExtraNext(); return "" }},
	{"die-next", 3, withN(1, 2), func(m *model, o op) string {
		for range o.N {
			m.ag.DieNext()
		}
		return ""
	}},
	{"sticky", 3, (*opGen).chatOp, func(m *model, o op) string { m.ag.SetSticky(o.Chat, true); m.sticky[o.Chat] = true; return "" }},
	{"sticky-end", 2, plain, (*model).applyStickyEnd},
	{"outage-mid", 3, (*opGen).outageMid, (*model).applyOutageMid},
	{"deaf", 2, (*opGen).chatOp, func(m *model, o op) string { m.ag.SetDeaf(o.Chat, true); m.deaf[o.Chat] = true; return "" }},
	{"deaf-end", 2, plain, (*model).applyDeafEnd},
	{"hang-api", 1, plain, func(m *model, o op) string { m.ag.SetSilent(true); return "" }},
	{"hang-api-end", 1, plain, func(m *model, o op) string { m.ag.SetSilent(false); return "" }},
	{"exit0-next", 2, plain, func(m *model, o op) string { m.ag.Exit0Next(); return "" }},
	// People asked for permission: the next turn calls a tool the agent
	// asks about; a person answers an open request (allow, always, deny)
	// or nobody does until it expires.
	{"tools-next", 5, withN(1, 2), func(m *model, o op) string {
		tools := []fake.Tool{{Name: "Bash", Input: json.RawMessage(`{"command":"touch x"}`)}, {Name: "Write", Input: json.RawMessage(`{"file_path":"/w/a"}`)}}
		m.ag.ToolsNext(tools[:o.N]...)
		return ""
	}},
	{"person-answers", 8, (*opGen).pick, (*model).applyAnswer},
	{"nobody-answers", 1, plain, func(m *model, o op) string { m.advance(m.cfg.PermissionTimeout); return "" }},
	{"start-emfile", 1, plain, func(m *model, o op) string {
		m.ag.SetStartErr(fmt.Errorf("model: pipes: %w", &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}))
		return ""
	}},
}

// applyAnswer answers one open permission request, as a person would
// (Pick chooses which and how).
func (m *model) applyAnswer(o op) string {
	open, err := m.sup.Permissions().Open(m.ctx(), "")
	if err != nil {
		return errText(err)
	}
	if len(open) == 0 {
		return "nothing to answer"
	}
	r := open[o.Pick%len(open)]
	d := permission.PersonDecisions[(o.Pick/len(open))%len(permission.PersonDecisions)]
	closed, err := m.sup.Permissions().Decide(m.ctx(), r.ID, d, "model")
	return fmt.Sprintf("%s %s %s: %s %s", r.ChatID, r.Tool, d, closed.Decision, errText(err))
}

// checkAsking: an open permission request belongs to a chat whose turn is
// in flight (its agent waits for the answer). A request whose agent or
// turn went away is closed — unless that close failed on a full disk.
func (m *model) checkAsking() bool {
	if m.storeFull || m.askLost {
		return false
	}
	open, err := m.sup.Permissions().Open(m.ctx(), "")
	if err != nil {
		m.t.Fatal(err)
	}
	for _, r := range open {
		ss, ok := m.sup.lookup(r.ChatID)
		if !ok {
			return m.violate("asking-orphan", "request %s of chat %s is open and the chat has no session", r.ID, r.ChatID)
		}
		if s := ss.Snapshot(); !s.Busy && s.StoreError == "" {
			return m.violate("asking-orphan", "request %s of chat %s is open with no turn in flight: %s", r.ID, r.ChatID, describe(s))
		}
		if now := m.clk.Now(); !now.Before(r.ExpiresAt) {
			return m.violate("asking-past-expiry", "request %s of chat %s is open at %s, past its expiry %s", r.ID, r.ChatID, now, r.ExpiresAt)
		}
	}
	return false
}

// applyStickyEnd ends every chat's sticky fault.
func (m *model) applyStickyEnd(op) string {
	for chat := range m.sticky {
		m.ag.SetSticky(chat, false)
	}
	clear(m.sticky)
	return ""
}

// applyOutageMid is an API outage that begins while a turn is in flight
// after another chat was answered in it: the op's chat gets slow (a minute
// a turn) and a message, another chat a message (answered at once if it
// can be), two seconds pass, and then the API goes down for turns in
// flight and the next N.
func (m *model) applyOutageMid(o op) string {
	m.ag.SetChatDelay(o.Chat, time.Minute)
	did := m.applySend(op{Chat: o.Chat, Text: o.Text[:1]})
	synctest.Wait()
	did += "; " + m.applySend(op{Chat: o.Text[1][:strings.IndexByte(o.Text[1], '/')], Text: o.Text[1:]})
	synctest.Wait()
	m.advance(2 * time.Second) // past the model's one second of slack for a racing tick
	m.ag.OutageMidTurn(o.N)
	return did
}

// applyDeafEnd makes every chat's agent read its input again.
func (m *model) applyDeafEnd(op) string {
	for chat := range m.deaf {
		m.ag.SetDeaf(chat, false)
	}
	clear(m.deaf)
	return ""
}

// applyStoreFail makes every store write fail as on a full disk until
// store-ok (or a daemon restart, which opens the store anew).
func (m *model) applyStoreFail(op) string {
	m.storeFull = true
	m.askLost = true // a request closed meanwhile may stay open in the store
	m.st.InjectWriteFault(func() error {
		return &os.PathError{Op: "write", Path: "dispatch.db-wal", Err: syscall.ENOSPC}
	})
	return "disk full"
}

func (m *model) applyStoreOK(op) string {
	m.storeFull = false
	m.st.InjectWriteFault(nil)
	return "disk has room"
}

func plain(g *opGen) op { return op{} }

func withN(ns ...int) func(g *opGen) op {
	return func(g *opGen) op { return op{N: ns[g.r.IntN(len(ns))]} }
}

// opGen generates a seed's operations.
type opGen struct {
	r     *rand.Rand
	chats []string
	count map[string]int
}

var modelChatPool = []string{"alice", "bob", "carol", "jobs-bg", "erin"}

func genOps(seed uint64, n int) (chats []string, ops []op) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	k := 3 + r.IntN(3)
	chats = slices.Clone(modelChatPool)
	r.Shuffle(len(chats), func(i, j int) { chats[i], chats[j] = chats[j], chats[i] })
	chats = chats[:k]
	sort.Strings(chats)
	g := &opGen{r: r, chats: chats, count: map[string]int{}}
	total := 0
	for _, s := range opSpecs {
		total += s.weight
	}
	startOK := -1 // agents that cannot start come back after a few ops
	apiOK := -1   // so does an API that hangs for everyone
	for len(ops) < n {
		if startOK--; startOK == 0 {
			ops = append(ops, op{Kind: "start-ok"})
			continue
		}
		if apiOK--; apiOK == 0 {
			ops = append(ops, op{Kind: "hang-api-end"})
			continue
		}
		w := r.IntN(total)
		for _, s := range opSpecs {
			if w < s.weight {
				o := s.gen(g)
				o.Kind = s.kind
				ops = append(ops, o)
				switch o.Kind {
				case "start-err", "start-emfile":
					startOK = 1 + r.IntN(4)
				case "hang-api":
					apiOK = 2 + r.IntN(8)
				}
				break
			}
			w -= s.weight
		}
	}
	return chats, ops
}

func (g *opGen) chat() string { return g.chats[g.r.IntN(len(g.chats))] }

func (g *opGen) chatOp() op { return op{Chat: g.chat(), Pick: g.r.IntN(1000)} }

func (g *opGen) pick() op { return op{Pick: 1 + g.r.IntN(1000)} }

// text is a chat's next message text, unique within the seed, sometimes
// with a directive that makes the fake agent fail every time (poison).
func (g *opGen) text(chat string) string {
	g.count[chat]++
	t := fmt.Sprintf("%s/m%d", chat, g.count[chat])
	switch x := g.r.IntN(100); {
	case x < 4:
		t += " ERROR"
	case x < 8:
		t += " CRASH"
	case x < 10:
		t += " HANG"
	case x < 11:
		t += " TOOLONG"
	case x < 13:
		t += " DIE"
	case x < 15:
		t += " NOCONV"
	case x < 17:
		t += " EXTRA" // answered, then a stray result
	case x < 19:
		t += " EXIT0" // answered, then a clean exit
	}
	return t
}

func (g *opGen) send() op {
	c := g.chat()
	return op{Chat: c, Text: []string{g.text(c)}}
}

func (g *opGen) burst() op {
	c := g.chat()
	o := op{Chat: c}
	for range 2 + g.r.IntN(3) {
		o.Text = append(o.Text, g.text(c))
	}
	return o
}

// slow makes a chat's turns take a while (on the daemon's clock), so that
// messages arrive during turns and operators act on them; 0 makes it fast.
func (g *opGen) slow() op {
	ds := []time.Duration{0, 2 * time.Second, time.Minute}
	return op{Chat: g.chat(), D: ds[g.r.IntN(len(ds))]}
}

// raceActions are what a race op runs two of at once.
var raceActions = []string{"send", "kill", "restart", "check", "proc-exit", "tick", "daemon-restart"}

// race runs two actions on one chat at the same time; the scheduler decides
// their interleaving, so a failure found by a race may need a few replays.
func (g *opGen) race() op {
	c := g.chat()
	i := g.r.IntN(len(raceActions))
	j := (i + 1 + g.r.IntN(len(raceActions)-1)) % len(raceActions)
	o := op{Chat: c, N: i*10 + j}
	if raceActions[i] == "send" || raceActions[j] == "send" {
		o.Text = []string{g.text(c)}
	}
	return o
}

// outageMid: a chat that gets slow and a message, another chat's message,
// and how many turns after the cut fail too.
func (g *opGen) outageMid() op {
	c := g.chat()
	other := g.chats[(slices.Index(g.chats, c)+1+g.r.IntN(len(g.chats)-1))%len(g.chats)]
	ns := []int{1, 3, 1000}
	return op{Chat: c, Text: []string{g.text(c), g.text(other)}, N: ns[g.r.IntN(len(ns))]}
}

func (g *opGen) advance() op {
	steps := []time.Duration{
		time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute,
		5*time.Minute + time.Second, 10*time.Minute + time.Second, 30*time.Minute + time.Second,
		2*time.Hour + time.Minute,
	}
	return op{D: steps[g.r.IntN(len(steps))]}
}

func errText(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

// poison reports whether a text makes the fake agent fail every time.
func poison(text string) bool {
	for _, d := range []string{"ERROR", "CRASH", "HANG", "TOOLONG", "DIE", "NOCONV"} {
		if strings.Contains(text, d) {
			return true
		}
	}
	return false
}

// --- the model and its daemon ---

type modelMsg struct {
	id, chat, text string
	n              int // acceptance order within the chat
	done           bool
	dropped        bool
}

type model struct {
	t    *testing.T
	seed uint64
	dir  string
	gen  int // which copy of the database is in use (daemon-crash copies it)
	cfg  Config
	clk  *clock.Fake
	st   *sqlite.Store
	ag   *fake.Agent
	logs *memLogs
	sup  *Supervisor

	cancelMu sync.Mutex
	cancels  []context.CancelFunc // of ctx(), called at the end

	chats  []string
	msgs   []*modelMsg // acceptance order
	byID   map[string]*modelMsg
	byText map[string]*modelMsg // texts are unique within a seed
	trace  []string
	notes  []string        // things that are not violations but explain a run
	open   []store.Message // the messages not done, as checkStep last read them
	// storeFull: store writes fail (disk full) until store-ok.
	storeFull bool
	// askLost: the disk was full at some time: the close of a permission
	// request whose agent went away may have failed (until a restart
	// expires it).
	askLost bool
	sticky  map[string]bool // chats whose turns fail as a sticky outage-type error
	deaf    map[string]bool // chats whose agents never read their input
	blame   blameState
	failed  string // the first violation
	inv     string // its invariant
}

type modelResult struct{ invariant string }

func modelConfig() Config {
	cfg := testConfig()
	cfg.PermissionTimeout = 20 * time.Minute
	cfg.FirstCheckDelay = 100000 * time.Hour // the model runs Check itself
	cfg.MaxBatch = 50
	return cfg
}

func runModel(t *testing.T, seed uint64, nops int, verbose bool) modelResult {
	chats, ops := genOps(seed, nops)
	m := &model{
		t: t, seed: seed, dir: t.TempDir(), cfg: modelConfig(),
		clk: clock.NewFake(t0), ag: fake.New(),
		chats: chats, byID: map[string]*modelMsg{}, byText: map[string]*modelMsg{},
		sticky: map[string]bool{}, deaf: map[string]bool{}, blame: newBlameState(),
	}
	m.logs = newMemLogs(600, m.clk)
	m.logs.judge = judgeLifecycle
	m.ag.SetClock(m.clk)
	m.openStore()
	m.startSupervisor()
	defer m.close()

	for i, o := range ops {
		var did string
		for _, s := range opSpecs {
			if s.kind == o.Kind {
				did = s.apply(m, o)
			}
		}
		synctest.Wait()
		line := fmt.Sprintf("%3d %s", i, o)
		if did != "" {
			line += "  → " + did
		}
		m.trace = append(m.trace, line)
		failed := m.failed != "" || m.observe() || m.checkStep()
		m.trace[len(m.trace)-1] += "\n      " + m.summary()
		if failed {
			m.report(ops, verbose)
			return modelResult{m.inv}
		}
	}
	if m.settle() || m.checkFinal() {
		m.report(ops, verbose)
		return modelResult{m.inv}
	}
	if *modelTrace {
		t.Logf("seed %d passed: chats %v\n%s\n%s", seed, chats, strings.Join(m.trace, "\n"), strings.Join(m.notes, "\n"))
	}
	return modelResult{}
}

// ctx bounds an operator call: while a session retries a store write that
// fails, its actor takes no command, and the call gives up (the command
// still runs once the write goes through), as a real client's would. The
// bound is the bubble's virtual time, so it costs nothing.
func (m *model) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m.cancelMu.Lock() // race ops call it from two goroutines
	m.cancels = append(m.cancels, cancel)
	m.cancelMu.Unlock()
	return ctx
}

func (m *model) dbPath() string {
	return filepath.Join(m.dir, fmt.Sprintf("gen%d", m.gen), "dispatch.db")
}

func (m *model) openStore() {
	st, err := sqlite.Open(m.dbPath(), m.clk)
	if err != nil {
		m.t.Fatal(err)
	}
	m.st = st
}

func (m *model) startSupervisor() {
	m.sup = New(m.cfg, m.st, m.ag, m.clk, m.logs)
	if err := m.sup.Start(m.ctx()); err != nil {
		m.t.Fatal(err)
	}
}

// shutdown stops the daemon cleanly, letting turns in flight finish for up
// to 5 s (of the bubble's time, which passes at once when all is blocked).
func (m *model) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.sup.Shutdown(ctx)
}

func (m *model) close() {
	m.shutdown()
	m.st.Close()
	m.cancelMu.Lock()
	defer m.cancelMu.Unlock()
	for _, cancel := range m.cancels {
		cancel()
	}
}

// daemonRestart is a clean restart of the daemon (SIGTERM, then a new
// process): the store is closed and opened again.
func (m *model) daemonRestart() {
	m.shutdown()
	m.st.Close()
	m.storeFull = false // a new store: the fault was on the old one
	m.openStore()
	m.startSupervisor()
	m.askLost = false // the start expired every open request
}

// daemonCrash is kill -9 of the daemon at this (quiescent) moment: the new
// daemon starts on a copy of the database as it is now, with messages in
// flight and sessions marked live. The old daemon is then shut down on the
// old copy, which nobody reads again — only to end its goroutines and to
// stop its agents, as the new daemon's orphan check would.
func (m *model) daemonCrash() string {
	old, oldSup, oldSt := m.dbPath(), m.sup, m.st
	m.gen++
	if err := os.MkdirAll(filepath.Dir(m.dbPath()), 0o700); err != nil {
		m.t.Fatal(err)
	}
	copied := 0
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(old + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			m.t.Fatal(err)
		}
		if err := os.WriteFile(m.dbPath()+suffix, b, 0o600); err != nil {
			m.t.Fatal(err)
		}
		copied++
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace period: nothing more of the old daemon counts
	oldSup.Shutdown(ctx)
	oldSt.Close()
	m.storeFull = false // a new store: the fault was on the old one
	m.openStore()
	m.startSupervisor()
	m.askLost = false // the start expired every open request
	return fmt.Sprintf("database copied (%d files) to gen%d", copied, m.gen)
}

// applySend accepts a send's texts. A burst's texts are all accepted before
// the chat's session is woken once, as when concurrent sends' wake-ups
// coalesce: the first ones go straight to the store, the last through
// Submit, which wakes the session. That makes a burst one batch
// deterministically, rather than however the scheduler interleaves the
// session with the sends.
func (m *model) applySend(o op) string {
	var ids []string
	for i, text := range o.Text {
		var (
			id  string
			dup bool
			err error
		)
		if i < len(o.Text)-1 {
			id, dup, err = m.st.Accept(m.ctx(), o.Chat, text, "")
		} else {
			id, dup, err = m.sup.Submit(m.ctx(), o.Chat, text, "")
		}
		if m.storeFull && store.IsStorage(err) {
			ids = append(ids, "refused (disk full)")
			continue // not accepted: the sender is told, nothing to track
		}
		if err != nil || dup {
			m.t.Fatalf("submit %q: %v (dup %v)", text, err, dup)
		}
		mm := &modelMsg{id: id, chat: o.Chat, text: text, n: len(m.msgs)}
		m.msgs = append(m.msgs, mm)
		m.byID[id] = mm
		m.byText[text] = mm
		ids = append(ids, id[:8])
	}
	return "ids " + strings.Join(ids, ",")
}

func (m *model) applyRace(o op) string {
	acts := []string{raceActions[o.N/10], raceActions[o.N%10]}
	out := make([]string, 2)
	var sent *modelMsg
	var wg sync.WaitGroup
	sup := m.sup // a racing daemon-restart replaces m.sup; the other action uses the old one
	for k, act := range acts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch act {
			case "send":
				id, _, err := sup.Submit(m.ctx(), o.Chat, o.Text[0], "")
				if err == nil {
					sent = &modelMsg{id: id, chat: o.Chat, text: o.Text[0]}
				}
				out[k] = act + ":" + errText(err)
			case "kill":
				out[k] = act + ":" + errText(sup.Kill(m.ctx(), o.Chat))
			case "restart":
				out[k] = act + ":" + errText(sup.Restart(m.ctx(), o.Chat, false))
			case "check":
				r := sup.Check(m.ctx())
				out[k] = fmt.Sprintf("%s:%v %v", act, r.Unhealthy, r.Reaped)
			case "daemon-restart":
				m.daemonRestart()
				out[k] = act
			case "proc-exit":
				out[k] = fmt.Sprint(act, ":", m.ag.Crash(o.Chat))
			case "tick":
				m.clk.Advance(time.Second)
				out[k] = act
			}
		}()
	}
	wg.Wait()
	if sent != nil { // a send racing a daemon restart may be refused
		sent.n = len(m.msgs)
		m.msgs = append(m.msgs, sent)
		m.byID[sent.id] = sent
		m.byText[sent.text] = sent
	}
	return strings.Join(out, " ")
}

// applyForget loses a chat's saved conversation (its transcript), as if it
// had been deleted; with strict resume on, the next start cannot resume it.
func (m *model) applyForget(o op) string {
	ss, ok := m.sup.lookup(o.Chat)
	if !ok {
		return "no session"
	}
	sid := ss.Snapshot().SessionID
	m.ag.Forget(sid)
	return "forgot " + sid[:min(8, len(sid))]
}

func (m *model) deadMessages() []store.Message {
	msgs, err := m.st.List(m.ctx(), store.Filter{State: store.Dead, Limit: 100000})
	if err != nil {
		m.t.Fatal(err)
	}
	return msgs
}

func (m *model) applyRetry(o op) string {
	dead := m.deadMessages()
	if len(dead) == 0 {
		return "no dead message"
	}
	d := dead[o.Pick%len(dead)]
	err := m.sup.RetryMessage(m.ctx(), d.ID)
	if err == nil {
		m.blame.allowance[d.ID] = 0 // its failures start again from 0
	}
	return fmt.Sprintf("%s %q: %s", d.ID[:8], d.Text, errText(err))
}

func (m *model) applyDrop(o op) string {
	dead := m.deadMessages()
	if len(dead) == 0 {
		return "no dead message"
	}
	d := dead[o.Pick%len(dead)]
	err := m.sup.DropMessage(m.ctx(), d.ID)
	if err == nil {
		m.byID[d.ID].dropped = true
	}
	return fmt.Sprintf("%s %q: %s", d.ID[:8], d.Text, errText(err))
}

// advance moves the daemon's clock forward by d from one timer's deadline
// to the next, letting the daemon settle after each, so that timers falling
// due in one advance are handled in deadline order whatever the scheduler
// does. Then the bubble's own time (contexts with timeouts, such as a
// probe's) moves forward by d too.
func (m *model) advance(d time.Duration) {
	target := m.clk.Now().Add(d)
	for steps := 0; ; steps++ {
		next, ok := m.clk.Next()
		if !ok || next.After(target) || steps > 100000 {
			break
		}
		m.clk.Set(next)
		synctest.Wait()
		if m.failed == "" && m.observe() {
			m.failed += " (at " + next.Format(time.TimeOnly) + ", during the advance)"
			return
		}
		// Check on the way too, but not at every one of the thousands of
		// one-second ticks of a long advance while turns wait for the gate:
		// a stranded chat stays stranded until the advance ends anyway.
		if (steps < 20 || steps%500 == 0) && m.failed == "" && m.checkStep() {
			m.failed += " (at " + next.Format(time.TimeOnly) + ", during the advance)"
			return
		}
	}
	m.clk.Set(target)
	synctest.Wait()
	time.Sleep(d) // bubble time: returns at once, firing due timers in order
	synctest.Wait()
}

func (m *model) check() string {
	r := m.sup.Check(m.ctx())
	var parts []string
	for _, chat := range slices.Sorted(mapKeys(r.Unhealthy)) {
		parts = append(parts, chat+"="+r.Unhealthy[chat])
	}
	if len(r.Reaped) > 0 {
		parts = append(parts, fmt.Sprint("reaped ", r.Reaped))
	}
	return strings.Join(parts, " ")
}

func mapKeys[V any](mp map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range mp {
			if !yield(k) {
				return
			}
		}
	}
}

// --- invariants ---

// violate records the first violation; it returns true so callers can stop.
func (m *model) violate(inv, format string, args ...any) bool {
	if m.failed == "" {
		m.inv = inv
		m.failed = fmt.Sprintf("invariant %s violated: %s", inv, fmt.Sprintf(format, args...))
	}
	return true
}

// storeMessages returns every stored message by id.
func (m *model) storeMessages() map[string]store.Message {
	out := map[string]store.Message{}
	for _, f := range []store.Filter{{Limit: 100000}, {State: store.Done, Limit: 100000}} {
		msgs, err := m.st.List(m.ctx(), f)
		if err != nil {
			m.t.Fatal(err)
		}
		for _, msg := range msgs {
			out[msg.ID] = msg
		}
	}
	return out
}

// holds reports whether a session with waiting messages has something
// scheduled to hand them over, or holds them on purpose. The rule: a chat
// with messages waiting always has a turn in flight, a restart or a retry
// scheduled, or a stated reason to hold them (it failed and waits for an
// operator, it waits at the API gate, it is paused, it retries a store
// write); never nothing.
func holds(s session.Snapshot) (bool, string) {
	switch {
	case s.Busy:
		return true, "turn in flight"
	case s.RestartPending:
		return true, "restart scheduled"
	case s.Backoff:
		return true, "retry scheduled after a backoff"
	case s.State == session.Failed:
		return true, "failed"
	case s.Held:
		return true, "waiting for the API gate"
	case s.State == session.Paused:
		return true, "paused"
	case s.StoreError != "":
		return true, "retrying a store write"
	}
	return false, ""
}

// summary is the state after an op, for the trace: message counts, the
// API, and each session's state (+busy, held, restart pending).
func (m *model) summary() string {
	var c store.Counts
	for _, msg := range m.open {
		switch msg.State {
		case store.Pending:
			c.Pending++
		case store.Inflight:
			c.Inflight++
		case store.Dead:
			c.Dead++
		}
	}
	for _, mm := range m.msgs {
		if mm.done {
			c.Done++
		}
	}
	api := "up"
	if !m.sup.breaker.Up() {
		api = "down"
	}
	parts := []string{fmt.Sprintf("pending=%d inflight=%d done=%d dead=%d api=%s |", c.Pending, c.Inflight, c.Done, c.Dead, api)}
	for _, chat := range m.chats {
		ss, ok := m.sup.lookup(chat)
		if !ok {
			continue
		}
		s := ss.Snapshot()
		p := chat + ":" + string(s.State)
		if s.Busy && s.State != session.Busy {
			p += "+busy"
		}
		if s.Held {
			p += "+held"
		}
		if s.RestartPending {
			p += "+restart"
		}
		if s.Backoff {
			p += "+backoff"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func describe(s session.Snapshot) string {
	return fmt.Sprintf("state=%s procUp=%v busy=%v held=%v restartPending=%v backoff=%v errors=%d turns=%d gen=%d",
		s.State, s.ProcUp, s.Busy, s.Held, s.RestartPending, s.Backoff, s.ErrorCount, s.Turns, s.Gen)
}

// checkStep checks the invariants that hold at every quiescent moment. It
// reads only the messages that are not done (a full read after every op
// would dominate the test's run time); the ones it does not see must be
// done, which the final check verifies.
func (m *model) checkStep() bool {
	if m.observe() {
		return true
	}
	open, err := m.st.List(m.ctx(), store.Filter{Limit: 100000})
	if err != nil {
		m.t.Fatal(err)
	}
	m.open = open
	may := m.mayCharge()
	for _, msg := range open {
		if m.checkCharged(msg.ID, msg.Failures, may) {
			return true
		}
	}
	stored := map[string]store.Message{}
	for _, msg := range open {
		stored[msg.ID] = msg
	}
	pending := map[string][]string{}
	inflight := map[string][]string{}
	for _, mm := range m.msgs {
		msg, ok := stored[mm.id]
		switch {
		case mm.dropped:
			continue
		case mm.done && ok:
			return m.violate("done-regressed", "message %s %q was done and is now %s", mm.id, mm.text, msg.State)
		case !ok && !mm.done:
			// done now (or lost: checkFinal and a poison check tell)
			mm.done = true
			if poison(mm.text) {
				return m.violate("poison-answered", "message %s %q is no longer pending, inflight or dead: answered (or lost)", mm.id, mm.text)
			}
		}
		switch msg.State {
		case store.Pending:
			pending[mm.chat] = append(pending[mm.chat], mm.text)
		case store.Inflight:
			inflight[mm.chat] = append(inflight[mm.chat], mm.text)
		}
	}
	heldSessions := 0
	for _, ss := range m.sup.all() {
		// A session retrying a store write publishes nothing else until
		// the write goes through: its held flag may be from before the
		// breaker woke it (the wake waits in its mailbox).
		if snap := ss.Snapshot(); snap.Held && snap.StoreError == "" {
			heldSessions++
		}
	}
	if m.checkAsking() {
		return true
	}
	if b := m.sup.breaker.Stats(); heldSessions > b.Held {
		return m.violate("held-unregistered", "%d sessions wait for the API gate, the breaker knows %d (up=%v)", heldSessions, b.Held, b.Up)
	}
	for _, chat := range slices.Sorted(mapKeys(inflight)) {
		ss, ok := m.sup.lookup(chat)
		if !ok {
			return m.violate("stranded-inflight", "chat %s has inflight messages %q and no session", chat, inflight[chat])
		}
		if s := ss.Snapshot(); !s.Busy && s.StoreError == "" {
			return m.violate("stranded-inflight", "chat %s has inflight messages %q and no turn in flight: %s", chat, inflight[chat], describe(s))
		}
	}
	for _, chat := range slices.Sorted(mapKeys(pending)) {
		ss, ok := m.sup.lookup(chat)
		if !ok {
			return m.violate("pending-no-session", "chat %s has pending messages %q and no session", chat, pending[chat])
		}
		s := ss.Snapshot()
		if ok, _ := holds(s); !ok {
			return m.violate("pending-while-"+string(s.State), "chat %s has pending messages %q with nothing scheduled: %s (api up=%v)",
				chat, pending[chat], describe(s), m.sup.breaker.Up())
		}
	}
	return false
}

// settle removes every fault and lets time pass, with health checks, until
// every message is done or dead; each round first checks the step
// invariants, so the health check's safety net cannot hide a stranded
// message.
func (m *model) settle() bool {
	m.trace = append(m.trace, "--- settle: faults off")
	m.ag.Fail(agent.Outage, 0) // clears any pending Fail, whatever its kind
	m.ag.SetStartErr(nil)
	m.ag.SetSilent(false)
	m.applyStickyEnd(op{})
	m.applyDeafEnd(op{})
	m.applyStoreOK(op{})
	for _, chat := range m.chats {
		if _, ok := m.sup.lookup(chat); ok {
			_ = m.sup.Resume(m.ctx(), chat)
		}
	}
	synctest.Wait()
	for round := range 30 {
		if m.checkStep() {
			return true
		}
		if m.allSettled() {
			m.trace = append(m.trace, fmt.Sprintf("--- settled after %d rounds", round))
			return false
		}
		for _, ss := range m.sup.all() {
			if s := ss.Snapshot(); s.State == session.Failed {
				m.notes = append(m.notes, fmt.Sprintf("settle: operator restart of failed %s (%s)", s.ChatID, s.FailReason))
				m.trace = append(m.trace, "--- settle: operator restart of failed "+s.ChatID)
				_ = m.sup.Restart(m.ctx(), s.ChatID, false)
				synctest.Wait()
				if m.checkStep() {
					return true
				}
			}
		}
		m.advance(30*time.Minute + time.Second)
		synctest.Wait()
		if m.failed != "" || m.checkStep() {
			return true
		}
		if r := m.check(); r != "" {
			m.trace = append(m.trace, "--- settle: check: "+r)
		}
		synctest.Wait()
	}
	if m.checkStep() {
		return true
	}
	if !m.allSettled() {
		var left []string
		for _, msg := range m.storeMessages() {
			if msg.State == store.Pending || msg.State == store.Inflight {
				left = append(left, fmt.Sprintf("%s %q %s", msg.ID[:8], msg.Text, msg.State))
			}
		}
		sort.Strings(left)
		return m.violate("not-settled", "after 30 settle rounds still waiting: %s", strings.Join(left, "; "))
	}
	return false
}

func (m *model) allSettled() bool {
	c, err := m.st.Counts(m.ctx())
	if err != nil {
		m.t.Fatal(err)
	}
	return c.Pending == 0 && c.Inflight == 0
}

var modelTextRE = regexp.MustCompile(`([a-z]+(?:-bg)?)/m\d+`)

// checkFinal checks, once everything has settled, the order of first
// deliveries and that replies belong to their own chat.
func (m *model) checkFinal() bool {
	if m.observe() {
		return true
	}
	stored := m.storeMessages()
	may := m.mayCharge()
	for _, mm := range m.msgs {
		if msg, ok := stored[mm.id]; ok && m.checkCharged(mm.id, msg.Failures, may) {
			return true
		}
	}
	for _, mm := range m.msgs {
		msg, ok := stored[mm.id]
		switch {
		case mm.dropped:
		case !ok:
			return m.violate("lost", "accepted message %s %q is not in the store", mm.id, mm.text)
		case msg.State == store.Done && poison(mm.text):
			return m.violate("poison-answered", "message %s %q is done: %q", mm.id, mm.text, msg.Reply)
		}
	}
	for _, chat := range m.chats {
		first := firstDeliveries(m.ag.TurnsFor(chat))
		pos := map[string]int{}
		for i, text := range first {
			pos[text] = i
		}
		last, lastText := -1, ""
		for _, mm := range m.msgs {
			if mm.chat != chat {
				continue
			}
			p, delivered := pos[mm.text]
			if !delivered {
				if msg := stored[mm.id]; msg.State == store.Done {
					return m.violate("reply", "message %s %q is done but never reached the agent", mm.id, mm.text)
				}
				continue
			}
			if p < last {
				return m.violate("order", "chat %s: %q reached the agent before %q, accepted earlier; first deliveries: %q", chat, lastText, mm.text, first)
			}
			last, lastText = p, mm.text
		}
		for _, text := range first {
			for _, sm := range modelTextRE.FindAllStringSubmatch(text, -1) {
				if sm[1] != chat {
					return m.violate("reply", "chat %s's agent was given %q", chat, text)
				}
			}
		}
	}
	for _, mm := range m.msgs {
		msg, ok := stored[mm.id]
		if !ok || msg.State != store.Done {
			continue
		}
		if !strings.Contains(msg.Reply, mm.text) {
			return m.violate("reply", "message %s %q was answered with %q", mm.id, mm.text, msg.Reply)
		}
		for _, sm := range modelTextRE.FindAllStringSubmatch(msg.Reply, -1) {
			if sm[1] != mm.chat {
				return m.violate("reply", "message %s %q of %s was answered with %q", mm.id, mm.text, mm.chat, msg.Reply)
			}
		}
	}
	return false
}

// report prints the failure: the seed and how to replay it first.
func (m *model) report(ops []op, verbose bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %s\n", m.seed, m.failed)
	fmt.Fprintf(&b, "replay: go test ./internal/supervisor -run 'TestModel$' -seed %d -v\n", m.seed)
	if !verbose {
		m.t.Error(b.String())
		return
	}
	fmt.Fprintf(&b, "chats %v, %d operations generated; executed:\n%s\n", m.chats, len(ops), strings.Join(m.trace, "\n"))
	for _, n := range m.notes {
		fmt.Fprintln(&b, "note:", n)
	}
	b.WriteString("messages (acceptance order):\n")
	stored := m.storeMessages()
	may := m.mayCharge()
	for _, mm := range m.msgs {
		msg := stored[mm.id]
		st := string(msg.State)
		if mm.dropped {
			st = "dropped"
		}
		fmt.Fprintf(&b, "  %s %-8s %-22q %-8s attempts=%d failures=%d (chargeable %d) err=%q\n", mm.id[:8], mm.chat, mm.text, st, msg.Attempts, msg.Failures, may[mm.id], msg.Error)
	}
	b.WriteString("sessions:\n")
	for _, ss := range m.sup.all() {
		s := ss.Snapshot()
		fmt.Fprintf(&b, "  %-8s %s\n", s.ChatID, describe(s))
	}
	fmt.Fprintf(&b, "breaker: %+v\n", m.sup.breaker.Stats())
	fmt.Fprintf(&b, "last log lines:\n%s", m.logs.tail(120))
	m.t.Error(b.String())
}

// --- logs kept in memory ---

// memLogs implements Logs with the last lines in memory: the model needs
// them only to explain a failure.
type memLogs struct {
	mu    sync.Mutex
	lines []string
	max   int
	log   *slog.Logger
	// judge, if set, names the invariant a lifecycle event violates ("" for
	// none) and says why; the violations wait for the model to read them.
	judge   func(event, chat, reason string) (inv, why string)
	pending [][2]string
}

func newMemLogs(max int, clk clock.Clock) *memLogs {
	l := &memLogs{max: max}
	l.log = slog.New(slog.NewTextHandler(memWriter{l}, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Time(slog.TimeKey, clk.Now()) // the daemon's (fake) clock
			}
			return a
		},
	}))
	return l
}

type memWriter struct{ l *memLogs }

func (w memWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	w.l.lines = append(w.l.lines, strings.TrimRight(string(p), "\n"))
	if len(w.l.lines) > 2*w.l.max {
		w.l.lines = slices.Clone(w.l.lines[len(w.l.lines)-w.l.max:])
	}
	return len(p), nil
}

func (l *memLogs) Manager() *slog.Logger { return l.log }

func (l *memLogs) Event(ev lifecycle.Event, attrs ...slog.Attr) {
	if l.judge != nil {
		if inv, why := l.judge(ev.Kind.String(), ev.Chat, ev.Detail); inv != "" {
			l.mu.Lock()
			l.pending = append(l.pending, [2]string{inv, why})
			l.mu.Unlock()
		}
	}
	l.log.LogAttrs(context.Background(), ev.Kind.Level(), "lifecycle", append(ev.Attrs(), attrs...)...)
}

func (l *memLogs) Session(chat string) *slog.Logger { return l.log.With("chat", chat) }

// violations returns the lifecycle events judge objected to.
func (l *memLogs) violations() [][2]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.pending)
}

// judgeLifecycle: an agent start that failed for want of the daemon's own
// resources never spends the session's restart budget (it is retried, not
// counted: no "failure" event for it), and an agent that exited with status
// 0 after answering is started again plainly, never as a counted restart
// ("dead: agent exited" is the reason of an exit without an error).
func judgeLifecycle(event, chat, reason string) (string, string) {
	switch {
	case event == "failure" && strings.HasPrefix(reason, "start failed:") && strings.Contains(reason, syscall.EMFILE.Error()):
		return "daemon-error-charged", fmt.Sprintf("chat %s counted the daemon's own resource error against its restart budget: %s", chat, reason)
	case event == "restart" && strings.HasPrefix(reason, "dead: agent exited ("):
		return "clean-exit-counted", fmt.Sprintf("chat %s counted a clean exit after answering as a fault: restart %q", chat, reason)
	}
	return "", ""
}

func (l *memLogs) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines[max(0, len(l.lines)-n):]
	return strings.Join(lines, "\n")
}

var _ io.Writer = memWriter{}
