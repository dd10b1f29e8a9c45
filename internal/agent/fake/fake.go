// Package fake is an in-process agent for unit tests. Its faults are set at
// run time (delays, failures of any Kind, crashes, hangs, start errors, a
// scripting hook) and it records every start and turn so tests can assert
// what dispatch asked for. All methods are safe for concurrent use.
//
// By default it answers like stubclaude, "echo: <texts joined by \n> (turn
// N)" with N counting the successful turns of the conversation (session id)
// across processes, and it honours the stub's directives inside a text:
// CRASH (the process exits during the turn), HANG (no answer until ctx ends
// or Stop), ERROR (Fault), OUTAGE (Outage), OVERLOADED (Outage, status 529),
// TOOLONG (ContextTooLong, status 400), and with the stub's meaning DIE (the
// process exits before writing anything for the turn: ExitedSilent), SILENT
// (acknowledged, then nothing), EXTRA (answers, then a stray second result,
// which the next turn drops as answering nothing), EXIT0 (answers, then the
// process exits with status 0), STICKY (this and every later turn of the
// conversation fail with a timeout: Outage) and NOCONV (an error result whose
// text merely mentions "No conversation found": Fault).
// OutageMidTurn cuts the turns in flight with an outage, and SetDeaf makes a
// chat's agent never read its input.
// SetDirectives(false) turns that off.
//
// Tools: a line "TOOL_USE <name> <JSON input>" in a text (the fake API's
// marker) or ToolsNext makes the turn call that tool: the spec's Progress
// hears of it, then the spec's Permissions is asked (no asker refuses, as
// the CLI does in deny mode), and the reply ends with what became of each
// call, " [Bash allowed: touch x; Write denied: no]"; refused calls are
// the Result's Denials. Asked records every request and its answer.
//
// Every call of Process.Turn is also logged with how it ended and which
// knob, if any, decided it (Calls), so a test can tell which turn a one-off
// fault hit and what each turn could be blamed for.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

// Turn is one recorded call of Process.Turn.
type Turn struct {
	Chat      string
	SessionID string
	Texts     []string
}

// Call is one call of Process.Turn, with how it ended. Calls on a process
// that had already ended, or with a cancelled context, are logged too (they
// are not in Turns: they never reached the agent).
type Call struct {
	Turn
	Start, End time.Time
	Ended      bool
	// Hit names the knob that decided the turn, "" for none: "fail:<kind>",
	// "crash", "hang", "die", "silent" (SetSilent), "sticky" (SetSticky),
	// "exit0", "extra", "cut" (OutageMidTurn), "deaf" (SetDeaf). Directives
	// in the texts are not knobs.
	Hit string
	// CutAt: for Hit "cut", when the outage that ended the turn began.
	CutAt time.Time
	// How it ended: OK; otherwise Abandoned (its context ended first; Cause
	// is the context's cause) or an error of Kind.
	OK        bool
	Abandoned bool
	Cause     string
	Kind      agent.Kind
}

// ScriptFunc answers a turn in place of the default echo. A Result without
// a SessionID gets the process's.
type ScriptFunc func(chat string, texts []string) (agent.Result, error)

// Agent is the fake agent. It implements agent.Agent.
type Agent struct {
	mu         sync.Mutex
	clk        clock.Clock
	delay      time.Duration
	chatDelay  map[string]time.Duration
	failKind   agent.Kind
	failN      int
	crashNext  bool
	hangNext   bool
	dieNext    int
	exit0Next  bool
	extraNext  bool
	failMsg    string
	silent     bool
	sticky     map[string]int    // chat → its sticky turns so far
	deaf       map[string]bool   // chats whose agents never read their input
	cut        map[int]time.Time // calls in flight cut by an outage → when
	stickyConv map[string]bool   // session ids made sticky by STICKY
	strays     int
	calls      []Call
	startErr   error
	script     ScriptFunc
	directives bool
	strict     bool
	convs      map[string]int // session id → successful turns
	toolsNext  []Tool
	asked      []Asked
	turns      []Turn
	starts     []agent.Spec
	live       map[*Process]struct{}
}

var _ agent.Agent = (*Agent)(nil)

// New returns a fake agent on the wall clock, with directives on.
func New() *Agent {
	return &Agent{
		clk:        clock.Real{},
		chatDelay:  map[string]time.Duration{},
		directives: true,
		convs:      map[string]int{},
		sticky:     map[string]int{},
		deaf:       map[string]bool{},
		cut:        map[int]time.Time{},
		stickyConv: map[string]bool{},
		live:       map[*Process]struct{}{},
	}
}

// SetClock sets the clock for delays and LastOutput.
func (a *Agent) SetClock(clk clock.Clock) { a.with(func() { a.clk = clk }) }

// SetDelay makes every turn wait d before answering (0: none).
func (a *Agent) SetDelay(d time.Duration) { a.with(func() { a.delay = d }) }

// SetChatDelay makes chat's turns wait d, overriding SetDelay (0 removes
// the override).
func (a *Agent) SetChatDelay(chat string, d time.Duration) {
	a.with(func() {
		if d == 0 {
			delete(a.chatDelay, chat)
		} else {
			a.chatDelay[chat] = d
		}
	})
}

// Fail makes the next n turns (of any chat) fail with kind. Kind Exited
// also ends the process, like a crash.
func (a *Agent) Fail(kind agent.Kind, n int) {
	a.with(func() { a.failKind, a.failN, a.failMsg = kind, n, "" })
}

// FailMsg is Fail with the error's text: FailMsg(agent.Fault, 1, "No
// conversation found for ticket #4711") is an ordinary error result that
// merely mentions a lost conversation.
func (a *Agent) FailMsg(kind agent.Kind, n int, msg string) {
	a.with(func() { a.failKind, a.failN, a.failMsg = kind, n, msg })
}

// DieNext makes the process of the next turn exit before writing anything
// for it (like the stub's DIE): the turn fails with Kind ExitedSilent. Each
// call adds one more such turn.
func (a *Agent) DieNext() { a.with(func() { a.dieNext++ }) }

// Exit0Next makes the process of the next turn answer it and then exit with
// status 0 (like the stub's EXIT0).
func (a *Agent) Exit0Next() { a.with(func() { a.exit0Next = true }) }

// ExtraNext makes the next turn answer and then print a stray second result
// (like the stub's EXTRA), which the process's next turn drops.
func (a *Agent) ExtraNext() { a.with(func() { a.extraNext = true }) }

// SetSilent makes every turn, of every chat and probe, hang without any
// output after its acknowledgement while on: an API that hangs for
// everyone (the stub's STUB_SILENT_FILE).
func (a *Agent) SetSilent(on bool) { a.with(func() { a.silent = on }) }

// SetSticky makes every turn of chat fail with an outage-type error while
// on — a timeout, then a 429, alternately — as for a conversation whose
// every request times out or that alone exceeds a rate limit; other chats
// are not affected.
func (a *Agent) SetSticky(chat string, on bool) {
	a.with(func() {
		if on {
			a.sticky[chat] += 0
		} else {
			delete(a.sticky, chat)
		}
	})
}

// Armed reports whether a fault that can hit any chat's turn (or a probe)
// is set: a pending Fail, CrashNext, HangNext or DieNext, SetSilent, a
// start error, or a turn cut by OutageMidTurn that has not ended yet.
func (a *Agent) Armed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failN > 0 || a.crashNext || a.hangNext || a.dieNext > 0 || a.silent || a.startErr != nil || len(a.cut) > 0
}

// OutageMidTurn is an API outage that begins now: every turn in flight
// that is still waiting for its answer (its delay, SetDelay or
// SetChatDelay) fails with an Outage error when it would have been
// answered (Hit "cut", Call.CutAt now; Process.FirstRetry reports now, as
// a real agent reports its first retry), and the next n turns fail with
// one too, like Fail(agent.Outage, n).
func (a *Agent) OutageMidTurn(n int) {
	a.with(func() {
		now := a.clk.Now()
		for i := range a.calls {
			if !a.calls[i].Ended {
				if _, ok := a.cut[i]; !ok {
					a.cut[i] = now
				}
			}
		}
		a.failKind, a.failN, a.failMsg = agent.Outage, n, ""
	})
}

// takeCut reports whether call i was cut by an outage, and when; it logs
// the call as decided by the cut.
func (a *Agent) takeCut(i int) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.cut[i]
	if ok {
		delete(a.cut, i)
		a.calls[i].Hit, a.calls[i].CutAt = "cut", at
	}
	return at, ok
}

// SetDeaf makes every turn of chat, while on, never read by its agent: the
// turn waits (its bytes unread: Process.UnreadInput) until it is abandoned
// or the process ends, which then reports it Undelivered — an agent like
// "exec sleep 100000". Other chats and probes are not affected.
func (a *Agent) SetDeaf(chat string, on bool) {
	a.with(func() {
		if on {
			a.deaf[chat] = true
		} else {
			delete(a.deaf, chat)
		}
	})
}

// deafCall reports whether call i is of a deaf chat; it logs it so.
func (a *Agent) deafCall(p *Process, i int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.deaf[p.spec.ChatID] {
		return false
	}
	a.calls[i].Hit = "deaf"
	return true
}

// Strays counts the stray results dropped (EXTRA).
func (a *Agent) Strays() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.strays
}

// Calls returns the log of Turn calls from index from on.
func (a *Agent) Calls(from int) []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	if from >= len(a.calls) {
		return nil
	}
	return slices.Clone(a.calls[from:])
}

// CrashNext makes the process of the next turn exit during it: Done closes
// and the turn fails with Kind Exited.
func (a *Agent) CrashNext() { a.with(func() { a.crashNext = true }) }

// HangNext makes the next turn block until its ctx ends or the process is
// stopped.
func (a *Agent) HangNext() { a.with(func() { a.hangNext = true }) }

// SetStartErr makes Start fail with err while it is non-nil.
func (a *Agent) SetStartErr(err error) { a.with(func() { a.startErr = err }) }

// SetScript answers turns with fn instead of the echo (nil restores it).
// Knobs and directives still apply first.
func (a *Agent) SetScript(fn ScriptFunc) { a.with(func() { a.script = fn }) }

// SetDirectives turns the CRASH/HANG/ERROR/OUTAGE/... text directives on or
// off.
func (a *Agent) SetDirectives(on bool) { a.with(func() { a.directives = on }) }

// SetStrictResume makes resuming a conversation without a successful turn
// fail like the CLI: the process exits at once with an ExitErr of Kind
// ResumeFailed ("No conversation found"), and its turns fail so too.
// Off by default: any id resumes.
func (a *Agent) SetStrictResume(on bool) { a.with(func() { a.strict = on }) }

// Forget drops a conversation, as if its transcript were lost.
func (a *Agent) Forget(sessionID string) { a.with(func() { delete(a.convs, sessionID) }) }

// Crash ends chat's live processes as if they died on their own; it
// reports whether there was one.
func (a *Agent) Crash(chat string) bool {
	var victims []*Process
	a.with(func() {
		for p := range a.live {
			if p.spec.ChatID == chat {
				victims = append(victims, p)
			}
		}
	})
	for _, p := range victims {
		p.exit(agent.Errorf(agent.Exited, "fake: killed"))
	}
	return len(victims) > 0
}

// Turns returns every turn so far, in call order.
func (a *Agent) Turns() []Turn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.turns)
}

// TurnsFor returns chat's turns so far.
func (a *Agent) TurnsFor(chat string) []Turn {
	var ts []Turn
	for _, t := range a.Turns() {
		if t.Chat == chat {
			ts = append(ts, t)
		}
	}
	return ts
}

// Starts returns the spec of every Start call so far, failed ones included.
func (a *Agent) Starts() []agent.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.starts)
}

// Live counts the processes that have started and not ended.
func (a *Agent) Live() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}

// Process returns a live process of chat, or nil.
func (a *Agent) Process(chat string) *Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p := range a.live {
		if p.spec.ChatID == chat {
			return p
		}
	}
	return nil
}

func (a *Agent) with(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

// Start records spec and returns a process, or the StartErr. An empty
// SessionID gets a fresh uuid.
func (a *Agent) Start(ctx context.Context, spec agent.Spec) (agent.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := spec
	rec.Env = maps.Clone(spec.Env)
	a.starts = append(a.starts, rec)
	if a.startErr != nil {
		return nil, a.startErr
	}
	if spec.SessionID == "" {
		spec.SessionID = uuid.NewString()
	}
	p := &Process{a: a, spec: spec, done: make(chan struct{})}
	p.touch(a.clk)
	if _, known := a.convs[spec.SessionID]; spec.Resume && a.strict && !known {
		p.exitErr = agent.Errorf(agent.ResumeFailed, "No conversation found with session ID: %s", spec.SessionID)
		p.once.Do(func() { close(p.done) }) // never live
		return p, nil
	}
	a.live[p] = struct{}{}
	return p, nil
}

// Tool is one tool call of a turn.
type Tool struct {
	Name  string
	Input json.RawMessage
}

// Asked is one permission request of a turn and how it was answered.
type Asked struct {
	Chat    string
	Request agent.PermissionRequest
	Answer  agent.PermissionAnswer
	Err     error // the asker's error, or the turn's end while asking
}

// ToolsNext makes the next turn (of any chat) call tools, after any in its
// texts.
func (a *Agent) ToolsNext(tools ...Tool) { a.with(func() { a.toolsNext = slices.Clone(tools) }) }

// Asked returns every permission request asked so far, in order.
func (a *Agent) Asked() []Asked {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.asked)
}

// toolMarker starts a tool line in a text, as in the fake API.
const toolMarker = "TOOL_USE "

// toolLines returns the tools named by TOOL_USE lines of text.
func toolLines(text string) []Tool {
	var out []Tool
	for _, l := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), toolMarker)
		if !ok {
			continue
		}
		name, in, _ := strings.Cut(strings.TrimSpace(rest), " ")
		if in = strings.TrimSpace(in); !json.Valid([]byte(in)) {
			in = "{}"
		}
		out = append(out, Tool{Name: name, Input: json.RawMessage(in)})
	}
	return out
}

// useTools runs the turn's tool calls: progress, then the asker for each.
// It returns what became of them, the refused ones, and an error if the
// turn ended (ctx) or the process did while asking.
func (p *Process) useTools(ctx context.Context, tools []Tool) (string, []agent.Denial, error) {
	var notes []string
	var denials []agent.Denial
	for i, t := range tools {
		id := fmt.Sprintf("toolu_fake_%s_%d", p.spec.SessionID, i+1)
		summary := strings.TrimSpace(string(t.Input))
		if p.spec.Progress != nil {
			p.spec.Progress(agent.Progress{ToolUseID: id, Tool: t.Name, Input: t.Input, Summary: summary})
		}
		req := agent.PermissionRequest{ID: fmt.Sprintf("req-%s-%d", p.spec.SessionID, i+1), ToolUseID: id, Tool: t.Name,
			DisplayName: t.Name, Input: t.Input, Summary: summary}
		ans, err := p.ask(ctx, req)
		p.a.with(func() { p.a.asked = append(p.a.asked, Asked{Chat: p.spec.ChatID, Request: req, Answer: ans, Err: err}) })
		if ctx.Err() != nil {
			return "", nil, abandoned(ctx)
		}
		if p.isDone() {
			return "", nil, p.turnExitErr()
		}
		if err == nil && ans.Allow {
			notes = append(notes, t.Name+" allowed: "+summary)
			continue
		}
		msg := ans.Message
		if err != nil {
			msg = err.Error()
		}
		notes = append(notes, t.Name+" denied: "+msg)
		denials = append(denials, agent.Denial{ToolUseID: id, Tool: t.Name, Input: t.Input})
	}
	if len(notes) == 0 {
		return "", nil, nil
	}
	return " [" + strings.Join(notes, "; ") + "]", denials, nil
}

// ask asks the spec's Permissions about req, until an answer, the turn's
// end or the process's. No asker refuses.
func (p *Process) ask(ctx context.Context, req agent.PermissionRequest) (agent.PermissionAnswer, error) {
	if p.spec.Permissions == nil {
		return agent.PermissionAnswer{Message: "nobody can be asked"}, nil
	}
	p.mu.Lock()
	p.asking++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.asking--
		p.mu.Unlock()
	}()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-actx.Done():
		}
	}()
	return p.spec.Permissions.Ask(actx, req)
}

// plan is what the knobs decided for one turn.
type plan struct {
	clk         clock.Clock
	delay       time.Duration
	crash, hang bool
	die, exit0  bool
	extra       bool
	sticky      bool
	fail        *agent.TurnError
	script      ScriptFunc
	directives  bool
	tools       []Tool
}

// call logs a call of Turn and returns its index.
func (a *Agent) call(p *Process, texts []string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, Call{Turn: Turn{Chat: p.spec.ChatID, SessionID: p.spec.SessionID, Texts: slices.Clone(texts)},
		Start: a.clk.Now()})
	return len(a.calls) - 1
}

// ended logs how call i ended.
func (a *Agent) ended(i int, ctx context.Context, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.calls[i]
	c.End, c.Ended = a.clk.Now(), true
	delete(a.cut, i)
	switch {
	case err == nil:
		c.OK = true
	case ctx.Err() != nil:
		c.Abandoned = true
		if cause := context.Cause(ctx); cause != nil {
			c.Cause = cause.Error()
		}
	default:
		c.Kind = agent.KindOf(err)
	}
}

// take records a turn and consumes the one-shot knobs.
func (a *Agent) take(p *Process, texts []string, call int) plan {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.turns = append(a.turns, Turn{Chat: p.spec.ChatID, SessionID: p.spec.SessionID, Texts: slices.Clone(texts)})
	pl := plan{clk: a.clk, delay: a.delay, crash: a.crashNext, hang: a.hangNext, die: a.dieNext > 0,
		exit0: a.exit0Next, extra: a.extraNext, script: a.script, directives: a.directives}
	if d, ok := a.chatDelay[p.spec.ChatID]; ok {
		pl.delay = d
	}
	a.crashNext, a.hangNext, a.exit0Next, a.extraNext = false, false, false, false
	if a.directives {
		pl.tools = toolLines(strings.Join(texts, "\n"))
	}
	pl.tools = append(pl.tools, a.toolsNext...)
	a.toolsNext = nil
	if pl.die {
		a.dieNext--
	}
	hit := ""
	switch {
	case pl.crash:
		hit = "crash"
	case pl.hang:
		hit = "hang"
	case pl.die:
		hit = "die"
	}
	if a.failN > 0 {
		a.failN--
		pl.fail = agent.Errorf(a.failKind, "fake: injected %s", a.failKind)
		switch {
		case a.failMsg != "":
			pl.fail.Msg = a.failMsg
		case a.failKind == agent.ResumeFailed:
			pl.fail.Msg = "No conversation found with session ID: " + p.spec.SessionID
		}
		if hit == "" {
			hit = "fail:" + a.failKind.String()
		}
	}
	if a.silent {
		pl.hang = true
		if hit == "" {
			hit = "silent"
		}
	}
	text := strings.Join(texts, "\n")
	if a.directives && strings.Contains(text, "STICKY") {
		a.stickyConv[p.spec.SessionID] = true
	}
	if n, ok := a.sticky[p.spec.ChatID]; ok || a.stickyConv[p.spec.SessionID] {
		pl.sticky = true
		if ok {
			a.sticky[p.spec.ChatID] = n + 1
			if hit == "" {
				hit = "sticky"
			}
			if n%2 == 1 {
				pl.fail = &agent.TurnError{Kind: agent.Outage, Status: 429,
					Msg: `API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`}
			}
		}
		if pl.fail == nil || pl.fail.Kind != agent.Outage {
			pl.fail = agent.Errorf(agent.Outage, "API Error: Request timed out.")
		}
	}
	if hit == "" && pl.exit0 {
		hit = "exit0"
	}
	if hit == "" && pl.extra {
		hit = "extra"
	}
	a.calls[call].Hit = hit
	return pl
}

// succeed counts a successful turn of sessionID and returns its number.
func (a *Agent) succeed(sessionID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.convs[sessionID]++
	return a.convs[sessionID]
}

// Process is one fake agent process. It implements agent.Process.
type Process struct {
	a    *Agent
	spec agent.Spec
	last atomic.Int64 // unix nanoseconds
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	exitErr error
	stray   bool // a stray result is waiting to be read (EXTRA)
	asking  int  // permission requests open now
	unread  int  // bytes of a turn its (deaf) agent has not read
	// retryAt: the current turn was cut by an outage that began then (a
	// real agent would have reported retrying from then on)
	retryAt time.Time
}

var (
	_ agent.Process          = (*Process)(nil)
	_ agent.PermissionWaiter = (*Process)(nil)
)

// Asking counts the permission requests open now.
func (p *Process) Asking() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asking
}

// Turn answers per the agent's knobs, directives and script, in that order.
func (p *Process) Turn(ctx context.Context, texts []string) (_ agent.Result, err error) {
	call := p.a.call(p, texts)
	defer func() { p.a.ended(call, ctx, err) }()
	if p.isDone() {
		return agent.Result{}, p.turnExitErr()
	}
	if ctx.Err() != nil {
		return agent.Result{}, abandoned(ctx)
	}
	if p.a.deafCall(p, call) {
		return p.deafTurn(ctx, texts)
	}
	p.mu.Lock()
	stray := p.stray
	p.stray = false
	p.retryAt = time.Time{}
	p.mu.Unlock()
	if stray {
		// The stray result of the last turn comes before anything of this
		// one: like the driver, it answers no turn and is dropped.
		p.a.with(func() { p.a.strays++ })
	}
	pl := p.a.take(p, texts, call)
	p.touch(pl.clk)
	start := pl.clk.Now()
	if pl.delay > 0 {
		t := pl.clk.NewTimer(pl.delay)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return agent.Result{}, abandoned(ctx)
		case <-p.done:
			t.Stop()
			return agent.Result{}, p.turnExitErr()
		}
		if at, ok := p.a.takeCut(call); ok {
			p.mu.Lock()
			p.retryAt = at
			p.mu.Unlock()
			return agent.Result{}, agent.Errorf(agent.Outage, "API Error: Unable to connect to API (ConnectionRefused)")
		}
	}
	text := strings.Join(texts, "\n")
	has := func(d string) bool { return pl.directives && strings.Contains(text, d) }
	switch {
	case pl.die || has("DIE"):
		p.exit(agent.Errorf(agent.Exited, "fake: exited before any output (status 4)"))
		return agent.Result{}, agent.Errorf(agent.ExitedSilent, "fake: exited before writing anything for the turn")
	case pl.crash || has("CRASH"):
		p.exit(agent.Errorf(agent.Exited, "fake: crashed during a turn"))
		return agent.Result{}, p.turnExitErr()
	case pl.hang || has("HANG") || has("SILENT"):
		select {
		case <-ctx.Done():
			return agent.Result{}, abandoned(ctx)
		case <-p.done:
			return agent.Result{}, p.turnExitErr()
		}
	case pl.fail != nil:
		if pl.fail.Kind == agent.Exited {
			p.exit(pl.fail)
			return agent.Result{}, p.turnExitErr()
		}
		return agent.Result{}, pl.fail
	case pl.sticky:
		return agent.Result{}, pl.fail
	case has("OVERLOADED"):
		return agent.Result{}, &agent.TurnError{Kind: agent.Outage, Status: 529,
			Msg: `API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}
	case has("OUTAGE"):
		return agent.Result{}, agent.Errorf(agent.Outage, "API Error: Unable to connect to API (ConnectionRefused)")
	case has("TOOLONG"):
		return agent.Result{}, &agent.TurnError{Kind: agent.ContextTooLong, Status: 400, Msg: "Prompt is too long"}
	case has("NOCONV"):
		return agent.Result{}, agent.Errorf(agent.Fault, "Tool ticket_lookup: No conversation found for ticket #4711")
	case has("ERROR"):
		return agent.Result{}, agent.Errorf(agent.Fault, "stub error")
	}

	toolNote, denials, err := p.useTools(ctx, pl.tools)
	if err != nil {
		return agent.Result{}, err
	}
	var res agent.Result
	if pl.script != nil {
		var err error
		if res, err = pl.script(p.spec.ChatID, texts); err != nil {
			return agent.Result{}, err
		}
		p.a.succeed(p.spec.SessionID)
	} else {
		n := p.a.succeed(p.spec.SessionID)
		res.Text = fmt.Sprintf("echo: %s (turn %d)", text, n)
	}
	res.Text += toolNote
	res.Denials = append(res.Denials, denials...)
	if res.SessionID == "" {
		res.SessionID = p.spec.SessionID
	}
	if res.Duration == 0 {
		res.Duration = pl.clk.Now().Sub(start)
	}
	p.touch(pl.clk)
	if pl.extra || has("EXTRA") {
		p.mu.Lock()
		p.stray = true
		p.mu.Unlock()
	}
	if pl.exit0 || has("EXIT0") {
		// The answer is out; then the process ends with status 0.
		p.exit(nil)
	}
	return res, nil
}

// deafTurn is a turn its agent never reads: it waits, its bytes unread,
// until it is abandoned or the process ends (then it was Undelivered).
func (p *Process) deafTurn(ctx context.Context, texts []string) (agent.Result, error) {
	n := len(strings.Join(texts, "\n")) + 1
	p.mu.Lock()
	p.unread = n
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.unread = 0
		p.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return agent.Result{}, abandoned(ctx)
	case <-p.done:
		return agent.Result{}, agent.Errorf(agent.Undelivered, "fake: never read by the agent: %v", p.turnExitErr())
	}
}

// FirstRetry is, for a turn an outage cut (OutageMidTurn), when that
// outage began, if at or after since: a real agent reports retrying from
// then on. It implements agent.RetryReporter.
func (p *Process) FirstRetry(since time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retryAt.IsZero() || p.retryAt.Before(since) {
		return time.Time{}
	}
	return p.retryAt
}

// UnreadInput is how many bytes of the turn in flight its agent has not
// read: only a deaf chat's (SetDeaf). It implements agent.InputReporter.
func (p *Process) UnreadInput() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unread
}

func abandoned(ctx context.Context) error {
	return fmt.Errorf("fake: turn abandoned: %w", ctx.Err())
}

// SessionID is the spec's session id (or the generated one).
func (p *Process) SessionID() string { return p.spec.SessionID }

// Spec is the spec the process was started with.
func (p *Process) Spec() agent.Spec { return p.spec }

// Done is closed when the process is stopped or has crashed.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is nil after Stop, a *agent.TurnError after a crash (Kind Exited)
// or a strict failed resume (Kind ResumeFailed).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// LastOutput is when the process started or last began or ended a turn.
func (p *Process) LastOutput() time.Time { return time.Unix(0, p.last.Load()) }

// Pid is 0: there is no OS process.
func (p *Process) Pid() int { return 0 }

// Stop ends the process at once. Idempotent.
func (p *Process) Stop(context.Context) error {
	p.exit(nil)
	return nil
}

func (p *Process) touch(clk clock.Clock) { p.last.Store(clk.Now().UnixNano()) }

func (p *Process) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exit ends the process once, with err as its ExitErr.
func (p *Process) exit(err error) {
	p.once.Do(func() {
		p.mu.Lock()
		if p.exitErr == nil {
			p.exitErr = err
		}
		p.mu.Unlock()
		p.a.with(func() { delete(p.a.live, p) })
		close(p.done)
	})
}

// turnExitErr is the error of a turn on an ended process.
func (p *Process) turnExitErr() error {
	if err := p.ExitErr(); err != nil {
		return err
	}
	return agent.Errorf(agent.Exited, "fake: process stopped")
}
