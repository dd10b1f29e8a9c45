package permission

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

type brokerRig struct {
	t   *testing.T
	st  *Memory
	clk *clock.Fake
	b   *Broker
}

func newBrokerRig(t *testing.T) *brokerRig {
	var n atomic.Int64
	st, clk := NewMemory(), clock.NewFake(t0)
	return &brokerRig{t: t, st: st, clk: clk,
		b: NewBroker(st, clk, time.Minute, func() string { return fmt.Sprintf("perm-%d", n.Add(1)) })}
}

// ask starts an Ask in the background; the returned func waits for it.
func (r *brokerRig) ask(ctx context.Context, chat, tool string) func() (Request, error) {
	type out struct {
		r   Request
		err error
	}
	ch := make(chan out, 1)
	go func() {
		req, err := r.b.Ask(ctx, chat, Question{AgentID: "a1", Tool: tool, Summary: "touch x", Input: []byte(`{"command":"touch x"}`)})
		ch <- out{req, err}
	}()
	return func() (Request, error) {
		select {
		case o := <-ch:
			return o.r, o.err
		case <-time.After(10 * time.Second):
			r.t.Fatal("Ask never returned")
			return Request{}, nil
		}
	}
}

// open waits (bounded) until n requests are open and returns them.
func (r *brokerRig) open(n int) []Request {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.clk.BlockUntil(ctx, n); err != nil { // each open request arms its expiry
		r.t.Fatal(err)
	}
	open, err := r.st.OpenRequests(context.Background(), "")
	if err != nil || len(open) != n {
		r.t.Fatalf("open requests %+v, %v; want %d", open, err, n)
	}
	return open
}

func types(evs []events.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.Type)+":"+e.Decision)
	}
	return strings.Join(s, " ")
}

func TestBrokerAllow(t *testing.T) {
	r := newBrokerRig(t)
	wait := r.ask(context.Background(), "c1", "Bash")
	open := r.open(1)
	if o := open[0]; o.ChatID != "c1" || o.Tool != "Bash" || o.Summary != "touch x" || !o.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("open request %+v", o)
	}
	r.clk.Advance(10 * time.Second)
	if _, err := r.b.Decide(context.Background(), open[0].ID, Allow, "cli"); err != nil {
		t.Fatal(err)
	}
	got, err := wait()
	if err != nil || got.Decision != Allow || got.DecidedBy != "cli" || !got.DecidedAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("Ask = %+v, %v", got, err)
	}
	if a := Answer(got, time.Minute); !a.Allow {
		t.Errorf("answer %+v", a)
	}
	if _, err := r.b.Decide(context.Background(), open[0].ID, Deny, "cli"); !errors.Is(err, ErrClosed) {
		t.Errorf("second answer: %v, want ErrClosed", err)
	}
	evs := r.st.Events()
	if types(evs) != "permission_request: permission_decided:allow" || evs[1].By != "cli" || evs[0].ExpiresAt == nil {
		t.Errorf("events %+v", evs)
	}
}

func TestBrokerAllowAlways(t *testing.T) {
	r := newBrokerRig(t)
	wait := r.ask(context.Background(), "c1", "Bash")
	open := r.open(1)
	if _, err := r.b.Decide(context.Background(), open[0].ID, AllowAlways, "telegram:42"); err != nil {
		t.Fatal(err)
	}
	if got, _ := wait(); got.Decision != AllowAlways {
		t.Fatalf("Ask = %+v", got)
	}
	// The same chat and tool: allowed by the rule at once, nothing stored.
	got, err := r.b.Ask(context.Background(), "c1", Question{Tool: "Bash"})
	if err != nil || got.Decision != Allow || got.DecidedBy != ByRule {
		t.Errorf("second Ask = %+v, %v", got, err)
	}
	if n := len(r.st.Events()); n != 2 {
		t.Errorf("%d events, want the first request's two", n)
	}
	// Another chat, another tool: asked.
	waitOther := r.ask(context.Background(), "c2", "Bash")
	waitTool := r.ask(context.Background(), "c1", "Write")
	open = r.open(2)
	for _, o := range open {
		r.b.Decide(context.Background(), o.ID, Deny, "cli")
	}
	if a, _ := waitOther(); a.Decision != Deny {
		t.Errorf("other chat %+v", a)
	}
	if a, _ := waitTool(); a.Decision != Deny || Answer(a, time.Minute).Allow {
		t.Errorf("other tool %+v", a)
	}
	rules, _ := r.st.Rules(context.Background(), "")
	if len(rules) != 1 || rules[0].CreatedBy != "telegram:42" {
		t.Errorf("rules %+v", rules)
	}
	if ok, _ := r.st.RemoveRule(context.Background(), "c1", "Bash"); !ok {
		t.Error("rule not removed")
	}
}

func TestBrokerTimeout(t *testing.T) {
	r := newBrokerRig(t)
	wait := r.ask(context.Background(), "c1", "Bash")
	open := r.open(1)
	r.clk.Advance(time.Minute - time.Nanosecond)
	if n := len(r.st.Events()); n != 1 {
		t.Fatalf("closed before the expiry: %d events", n)
	}
	r.clk.Advance(time.Nanosecond)
	got, err := wait()
	if err != nil || got.Decision != Expired || got.Reason != ReasonTimeout || got.DecidedBy != ByDispatch {
		t.Fatalf("Ask = %+v, %v", got, err)
	}
	if a := Answer(got, time.Minute); a.Allow || !strings.Contains(a.Message, "within 1m0s") {
		t.Errorf("answer %+v", a)
	}
	if _, err := r.b.Decide(context.Background(), open[0].ID, Allow, "cli"); !errors.Is(err, ErrClosed) {
		t.Errorf("late answer: %v", err)
	}
	if evs := r.st.Events(); types(evs) != "permission_request: permission_decided:expired" || evs[1].Reason != ReasonTimeout {
		t.Errorf("events %+v", evs)
	}
}

// TestBrokerAnswerAtExpiry: an answer at the instant of expiry loses to
// the clock, even before the expiry timer has been handled.
func TestBrokerAnswerAtExpiry(t *testing.T) {
	r := newBrokerRig(t)
	wait := r.ask(context.Background(), "c1", "Bash")
	open := r.open(1)
	r.clk.Set(open[0].ExpiresAt) // fires the timer too; the answer may come first
	closed, err := r.b.Decide(context.Background(), open[0].ID, Allow, "cli")
	if !errors.Is(err, ErrClosed) || closed.Decision != Expired {
		t.Errorf("answer at expiry: %+v, %v", closed, err)
	}
	if got, _ := wait(); got.Decision != Expired {
		t.Errorf("Ask = %+v", got)
	}
	if n := len(r.st.Events()); n != 2 {
		t.Errorf("%d events, want one decision", n)
	}
}

func TestBrokerAgentGoneAndRestart(t *testing.T) {
	r := newBrokerRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	wait := r.ask(ctx, "c1", "Bash")
	r.open(1)
	cancel()
	if got, _ := wait(); got.Decision != Expired || got.Reason != ReasonAgentGone {
		t.Errorf("Ask = %+v", got)
	}
	// A request left open by an earlier daemon is expired at start.
	stale := Request{ID: "old", ChatID: "c9", Tool: "Write", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	r.st.CreateRequest(context.Background(), stale)
	if n, err := r.b.ExpireOpen(context.Background(), ReasonRestart); n != 1 || err != nil {
		t.Fatalf("ExpireOpen = %d, %v", n, err)
	}
	if got, _ := r.st.GetRequest(context.Background(), "old"); got.Decision != Expired || got.Reason != ReasonRestart {
		t.Errorf("stale request %+v", got)
	}
}

func TestBrokerErrors(t *testing.T) {
	r := newBrokerRig(t)
	if _, err := r.b.Decide(context.Background(), "nope", Allow, "cli"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := r.b.Decide(context.Background(), "nope", Expired, "cli"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a person expiring: %v", err)
	}
	r.st.Err = errors.New("disk full")
	if _, err := r.b.Ask(context.Background(), "c1", Question{Tool: "Bash"}); err == nil {
		t.Error("Ask with a failing store succeeded")
	}
	// Through the agent.Asker: a store error refuses (the driver turns an
	// asker error into a refusal).
	if _, err := r.b.Asker("c1").Ask(context.Background(), agent.PermissionRequest{Tool: "Bash"}); err == nil {
		t.Error("Asker with a failing store succeeded")
	}
}
