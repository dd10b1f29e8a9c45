// Package fake is an in-process agent for unit tests. Its faults are set at
// run time (delays, failures of any Kind, crashes, hangs, start errors, a
// scripting hook) and it records every start and turn so tests can assert
// what dispatch asked for. All methods are safe for concurrent use.
//
// By default it answers like stubclaude, "echo: <texts joined by \n> (turn
// N)" with N counting the successful turns of the conversation (session id)
// across processes, and it honours the stub's directives inside a text:
// CRASH (the process exits during the turn), HANG (no answer until ctx ends
// or Stop), ERROR (Fault), OUTAGE (Outage), OVERLOADED (Outage, status 529)
// and TOOLONG (ContextTooLong, status 400). SetDirectives(false) turns that
// off.
package fake

import (
	"context"
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
	startErr   error
	script     ScriptFunc
	directives bool
	strict     bool
	convs      map[string]int // session id → successful turns
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
func (a *Agent) Fail(kind agent.Kind, n int) { a.with(func() { a.failKind, a.failN = kind, n }) }

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

// plan is what the knobs decided for one turn.
type plan struct {
	clk         clock.Clock
	delay       time.Duration
	crash, hang bool
	fail        *agent.TurnError
	script      ScriptFunc
	directives  bool
}

// take records a turn and consumes the one-shot knobs.
func (a *Agent) take(p *Process, texts []string) plan {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.turns = append(a.turns, Turn{Chat: p.spec.ChatID, SessionID: p.spec.SessionID, Texts: slices.Clone(texts)})
	pl := plan{clk: a.clk, delay: a.delay, crash: a.crashNext, hang: a.hangNext, script: a.script, directives: a.directives}
	if d, ok := a.chatDelay[p.spec.ChatID]; ok {
		pl.delay = d
	}
	a.crashNext, a.hangNext = false, false
	if a.failN > 0 {
		a.failN--
		pl.fail = agent.Errorf(a.failKind, "fake: injected %s", a.failKind)
		if a.failKind == agent.ResumeFailed {
			pl.fail.Msg = "No conversation found with session ID: " + p.spec.SessionID
		}
	}
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
}

var _ agent.Process = (*Process)(nil)

// Turn answers per the agent's knobs, directives and script, in that order.
func (p *Process) Turn(ctx context.Context, texts []string) (agent.Result, error) {
	if p.isDone() {
		return agent.Result{}, p.turnExitErr()
	}
	if ctx.Err() != nil {
		return agent.Result{}, abandoned(ctx)
	}
	pl := p.a.take(p, texts)
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
	}
	text := strings.Join(texts, "\n")
	has := func(d string) bool { return pl.directives && strings.Contains(text, d) }
	switch {
	case pl.crash || has("CRASH"):
		p.exit(agent.Errorf(agent.Exited, "fake: crashed during a turn"))
		return agent.Result{}, p.turnExitErr()
	case pl.hang || has("HANG"):
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
	case has("OVERLOADED"):
		return agent.Result{}, &agent.TurnError{Kind: agent.Outage, Status: 529,
			Msg: `API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}
	case has("OUTAGE"):
		return agent.Result{}, agent.Errorf(agent.Outage, "API Error: Unable to connect to API (ConnectionRefused)")
	case has("TOOLONG"):
		return agent.Result{}, &agent.TurnError{Kind: agent.ContextTooLong, Status: 400, Msg: "Prompt is too long"}
	case has("ERROR"):
		return agent.Result{}, agent.Errorf(agent.Fault, "stub error")
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
	if res.SessionID == "" {
		res.SessionID = p.spec.SessionID
	}
	if res.Duration == 0 {
		res.Duration = pl.clk.Now().Sub(start)
	}
	p.touch(pl.clk)
	return res, nil
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
