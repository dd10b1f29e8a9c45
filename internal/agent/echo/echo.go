// Package echo is an in-process agent that answers every turn with its own
// input at once. It has no process and no I/O, so running dispatch on it
// measures dispatch's own overhead; it also serves demos.
package echo

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

// Agent starts echo processes. It implements agent.Agent.
type Agent struct {
	clk clock.Clock
}

var _ agent.Agent = (*Agent)(nil)

// New returns an echo agent timed by clk (the wall clock when nil).
func New(clk clock.Clock) *Agent {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Agent{clk: clk}
}

// Start returns a process for spec; it never fails unless ctx is done. An
// empty spec.SessionID gets a fresh uuid.
func (a *Agent) Start(ctx context.Context, spec agent.Spec) (agent.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := spec.SessionID
	if id == "" {
		id = uuid.NewString()
	}
	p := &Process{clk: a.clk, sessionID: id, done: make(chan struct{})}
	p.last.Store(a.clk.Now().UnixNano())
	return p, nil
}

// Process is one echo session. It implements agent.Process.
type Process struct {
	clk       clock.Clock
	sessionID string
	last      atomic.Int64 // unix nanoseconds
	done      chan struct{}
	stopOnce  sync.Once
}

var _ agent.Process = (*Process)(nil)

// Turn answers with the texts joined by "\n".
func (p *Process) Turn(ctx context.Context, texts []string) (agent.Result, error) {
	select {
	case <-p.done:
		return agent.Result{}, agent.Errorf(agent.Exited, "echo: stopped")
	default:
	}
	if err := ctx.Err(); err != nil {
		return agent.Result{}, fmt.Errorf("echo: turn abandoned: %w", err)
	}
	start := p.clk.Now()
	p.last.Store(start.UnixNano())
	return agent.Result{Text: strings.Join(texts, "\n"), SessionID: p.sessionID}, nil
}

// SessionID is the spec's session id.
func (p *Process) SessionID() string { return p.sessionID }

// Done is closed by Stop.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is always nil: an echo process only ends by Stop.
func (p *Process) ExitErr() error { return nil }

// LastOutput is the start of the last turn, or the start of the process.
func (p *Process) LastOutput() time.Time { return time.Unix(0, p.last.Load()) }

// Pid is 0: there is no OS process.
func (p *Process) Pid() int { return 0 }

// Stop closes Done. Idempotent.
func (p *Process) Stop(context.Context) error {
	p.stopOnce.Do(func() { close(p.done) })
	return nil
}
