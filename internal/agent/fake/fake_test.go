package fake

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, a *Agent, chat, id string, resume bool) agent.Process {
	t.Helper()
	p, err := a.Start(context.Background(), agent.Spec{ChatID: chat, SessionID: id, Resume: resume})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

func turn(p agent.Process, texts ...string) (agent.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Turn(ctx, texts)
}

func mustReply(t *testing.T, p agent.Process, want string, texts ...string) {
	t.Helper()
	res, err := turn(p, texts...)
	if err != nil || res.Text != want {
		t.Fatalf("Turn(%q) = %q, %v; want %q", texts, res.Text, err, want)
	}
}

func wantKind(t *testing.T, err error, k agent.Kind) {
	t.Helper()
	var te *agent.TurnError
	if !errors.As(err, &te) || te.Kind != k {
		t.Fatalf("err = %v, want kind %v", err, k)
	}
}

func isDone(p agent.Process) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

func TestEchoAndResume(t *testing.T) {
	a := New()
	p := start(t, a, "alice", "s1", false)
	mustReply(t, p, "echo: hi (turn 1)", "hi")
	mustReply(t, p, "echo: a\nb (turn 2)", "a", "b")
	if a.Live() != 1 {
		t.Errorf("Live = %d", a.Live())
	}
	p.Stop(context.Background())
	if !isDone(p) || p.ExitErr() != nil || a.Live() != 0 {
		t.Fatalf("after Stop: done %v, ExitErr %v, Live %d", isDone(p), p.ExitErr(), a.Live())
	}
	p2 := start(t, a, "alice", "s1", true)
	mustReply(t, p2, "echo: again (turn 3)", "again")

	starts := a.Starts()
	if len(starts) != 2 || starts[0].Resume || !starts[1].Resume || starts[1].SessionID != "s1" {
		t.Errorf("Starts = %+v", starts)
	}
	if ts := a.TurnsFor("alice"); len(ts) != 3 || ts[1].Texts[1] != "b" || ts[2].SessionID != "s1" {
		t.Errorf("Turns = %+v", ts)
	}
}

func TestKnobs(t *testing.T) {
	a := New()
	p := start(t, a, "c", "s", false)

	a.Fail(agent.Outage, 2)
	for range 2 {
		_, err := turn(p, "x")
		wantKind(t, err, agent.Outage)
	}
	mustReply(t, p, "echo: x (turn 1)", "x")

	a.CrashNext()
	_, err := turn(p, "x")
	wantKind(t, err, agent.Exited)
	if !isDone(p) || agent.KindOf(p.ExitErr()) != agent.Exited || a.Live() != 0 {
		t.Fatalf("after crash: done %v, ExitErr %v, Live %d", isDone(p), p.ExitErr(), a.Live())
	}
	_, err = turn(p, "x")
	wantKind(t, err, agent.Exited)

	p = start(t, a, "c", "s", true)
	a.HangNext()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Turn(ctx, []string{"x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung turn = %v", err)
	}

	a.HangNext()
	calls := len(a.Calls(0))
	errc := make(chan error, 1)
	go func() { _, err := turn(p, "x"); errc <- err }()
	// stop it once the turn has begun hanging (its call is logged)
	for deadline := time.Now().Add(10 * time.Second); len(a.Calls(calls)) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the hung turn never began")
		}
	}
	p.Stop(context.Background())
	wantKind(t, <-errc, agent.Exited)

	boom := errors.New("boom")
	a.SetStartErr(boom)
	if _, err := a.Start(context.Background(), agent.Spec{ChatID: "c"}); !errors.Is(err, boom) {
		t.Fatalf("Start = %v", err)
	}
	a.SetStartErr(nil)
	if n := len(a.Starts()); n != 3 {
		t.Errorf("%d starts recorded, want 3", n)
	}
}

func TestDirectives(t *testing.T) {
	a := New()
	p := start(t, a, "c", "s", false)
	for _, tt := range []struct {
		text string
		kind agent.Kind
	}{{"ERROR", agent.Fault}, {"OUTAGE", agent.Outage}, {"OVERLOADED", agent.Outage}, {"TOOLONG", agent.ContextTooLong}} {
		_, err := turn(p, tt.text)
		wantKind(t, err, tt.kind)
	}
	_, err := turn(p, "CRASH now")
	wantKind(t, err, agent.Exited)

	a.SetDirectives(false)
	p = start(t, a, "c", "s", true)
	mustReply(t, p, "echo: CRASH (turn 1)", "CRASH")
}

func TestScriptAndDelay(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	a := New()
	a.SetClock(clk)
	a.SetScript(func(chat string, texts []string) (agent.Result, error) {
		if texts[0] == "bad" {
			return agent.Result{}, agent.Errorf(agent.Auth, "no key")
		}
		return agent.Result{Text: chat + ":" + texts[0]}, nil
	})
	p := start(t, a, "bob", "s", false)
	res, err := turn(p, "hi")
	if err != nil || res.Text != "bob:hi" || res.SessionID != "s" {
		t.Fatalf("Turn = %+v, %v", res, err)
	}
	_, err = turn(p, "bad")
	wantKind(t, err, agent.Auth)

	a.SetDelay(time.Hour)
	a.SetChatDelay("bob", time.Minute)
	done := make(chan agent.Result, 1)
	go func() { r, _ := turn(p, "slow"); done <- r }()
	armed, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clk.BlockUntil(armed, 1); err != nil { // the delay's timer is armed
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if r := <-done; r.Text != "bob:slow" || r.Duration != time.Minute {
		t.Fatalf("delayed turn = %+v", r)
	}
	if !p.LastOutput().Equal(clk.Now()) {
		t.Errorf("LastOutput = %v, want %v", p.LastOutput(), clk.Now())
	}
}

func TestStrictResumeAndCrash(t *testing.T) {
	a := New()
	a.SetStrictResume(true)
	p := start(t, a, "c", "unknown", true)
	if !isDone(p) || agent.KindOf(p.ExitErr()) != agent.ResumeFailed {
		t.Fatalf("strict resume: done %v, ExitErr %v", isDone(p), p.ExitErr())
	}
	_, err := turn(p, "x")
	wantKind(t, err, agent.ResumeFailed)

	p = start(t, a, "c", "known", false)
	mustReply(t, p, "echo: x (turn 1)", "x")
	if !a.Crash("c") || !isDone(p) || a.Crash("c") {
		t.Fatal("Crash did not end the live process exactly once")
	}
	p = start(t, a, "c", "known", true)
	mustReply(t, p, "echo: y (turn 2)", "y")
	if a.Process("c") != p {
		t.Error("Process(chat) is not the live one")
	}
	a.Forget("known")
	p.Stop(context.Background())
	p = start(t, a, "c", "known", true)
	if agent.KindOf(p.ExitErr()) != agent.ResumeFailed {
		t.Errorf("resume of a forgotten id: ExitErr %v", p.ExitErr())
	}
}

func TestConcurrent(t *testing.T) {
	a := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			chat := string(rune('a' + i))
			p, err := a.Start(context.Background(), agent.Spec{ChatID: chat, SessionID: chat})
			if err != nil {
				t.Error(err)
				return
			}
			defer p.Stop(context.Background())
			for range 20 {
				a.Fail(agent.Outage, 1)
				a.SetChatDelay(chat, 0)
				turn(p, "x")
				_ = a.Turns()
				_ = a.Live()
			}
		})
	}
	wg.Wait()
	if a.Live() != 0 || len(a.Turns()) != 160 {
		t.Errorf("Live %d, turns %d", a.Live(), len(a.Turns()))
	}
}

func TestBlameFaults(t *testing.T) {
	a := New()
	p := start(t, a, "c", "s", false)

	a.FailMsg(agent.Fault, 1, "Tool ticket_lookup: No conversation found for ticket #4711")
	_, err := turn(p, "x")
	wantKind(t, err, agent.Fault)
	_, err = turn(p, "NOCONV please")
	wantKind(t, err, agent.Fault)

	// a stray result answers nothing: the next turn gets its own answer
	a.ExtraNext()
	mustReply(t, p, "echo: x (turn 1)", "x")
	mustReply(t, p, "echo: y (turn 2)", "y")
	mustReply(t, p, "echo: EXTRA (turn 3)", "EXTRA")
	mustReply(t, p, "echo: z (turn 4)", "z")
	if a.Strays() != 2 {
		t.Errorf("Strays = %d, want 2", a.Strays())
	}

	// sticky for one chat only: timeouts and 429s, others unaffected
	a.SetSticky("c", true)
	q := start(t, a, "d", "s2", false)
	for range 3 {
		_, err = turn(p, "x")
		wantKind(t, err, agent.Outage)
		mustReply(t, q, "echo: x (turn 1)", "x")
		_ = a.Process("d").Stop(context.Background())
		a.Forget("s2")
		q = start(t, a, "d", "s2", false)
	}
	a.SetSticky("c", false)
	mustReply(t, p, "echo: x (turn 5)", "x")

	// answer, then a clean exit
	a.Exit0Next()
	mustReply(t, p, "echo: x (turn 6)", "x")
	if !isDone(p) || p.ExitErr() != nil {
		t.Fatalf("after EXIT0: done %v, ExitErr %v", isDone(p), p.ExitErr())
	}

	// exit before any output
	p = start(t, a, "c", "s", true)
	a.DieNext()
	_, err = turn(p, "x")
	wantKind(t, err, agent.ExitedSilent)
	if !isDone(p) || agent.KindOf(p.ExitErr()) != agent.Exited {
		t.Fatalf("after DIE: done %v, ExitErr %v", isDone(p), p.ExitErr())
	}
	p = start(t, a, "c", "s", true)
	_, err = turn(p, "DIE now")
	wantKind(t, err, agent.ExitedSilent)

	// the API hangs for everyone
	p = start(t, a, "c", "s", true)
	a.SetSilent(true)
	if !a.Armed() {
		t.Error("SetSilent: not Armed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := p.Turn(ctx, []string{"x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent turn = %v", err)
	}
	a.SetSilent(false)
	if a.Armed() {
		t.Error("Armed with no fault set")
	}

	// the call log says which knob decided each turn and how it ended
	var hits []string
	for _, c := range a.Calls(0) {
		if c.Hit != "" {
			hits = append(hits, c.Hit)
		}
		if !c.Ended {
			t.Errorf("call %+v not ended", c)
		}
	}
	if want := "fail:fault extra sticky sticky sticky exit0 die silent"; strings.Join(hits, " ") != want {
		t.Errorf("hits %q, want %q", hits, want)
	}
	last := a.Calls(0)[len(a.Calls(0))-1]
	if !last.Abandoned || last.OK {
		t.Errorf("last call %+v, want abandoned", last)
	}
}

// TestToolsAskAndProgress: TOOL_USE lines and ToolsNext report progress,
// ask the spec's Permissions, and the reply and Denials say what became of
// each call; without an asker the calls are refused.
func TestToolsAskAndProgress(t *testing.T) {
	a := New()
	var progress []agent.Progress
	ask := agent.AskerFunc(func(_ context.Context, r agent.PermissionRequest) (agent.PermissionAnswer, error) {
		if r.Tool == "Bash" {
			return agent.PermissionAnswer{Allow: true}, nil
		}
		return agent.PermissionAnswer{Message: "no"}, nil
	})
	p, err := a.Start(context.Background(), agent.Spec{ChatID: "c", SessionID: "s", Permissions: ask,
		Progress: func(p agent.Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	a.ToolsNext(Tool{Name: "Write", Input: json.RawMessage(`{"file_path":"a"}`)})
	res, err := p.Turn(context.Background(), []string{"go\nTOOL_USE Bash {\"command\":\"touch x\"}"})
	if err != nil {
		t.Fatal(err)
	}
	if want := ` [Bash allowed: {"command":"touch x"}; Write denied: no]`; !strings.HasSuffix(res.Text, want) {
		t.Errorf("reply %q, want it to end with %q", res.Text, want)
	}
	if len(res.Denials) != 1 || res.Denials[0].Tool != "Write" {
		t.Errorf("denials %+v", res.Denials)
	}
	if len(progress) != 2 || progress[0].Tool != "Bash" || progress[1].Tool != "Write" {
		t.Errorf("progress %+v", progress)
	}
	if asked := a.Asked(); len(asked) != 2 || asked[0].Chat != "c" || !asked[0].Answer.Allow || asked[1].Answer.Allow {
		t.Errorf("asked %+v", asked)
	}

	// No asker: refused, like the CLI in deny mode.
	q, _ := a.Start(context.Background(), agent.Spec{ChatID: "d", SessionID: "s2"})
	res, err = q.Turn(context.Background(), []string{"TOOL_USE Bash {}"})
	if err != nil || !strings.HasSuffix(res.Text, "[Bash denied: nobody can be asked]") || len(res.Denials) != 1 {
		t.Errorf("no asker: %q, %+v, %v", res.Text, res.Denials, err)
	}
}

// TestToolsAskEndsWithTheTurn: an asker that never answers is released
// when the turn is abandoned, and when the process is stopped.
func TestToolsAskEndsWithTheTurn(t *testing.T) {
	a := New()
	asking := make(chan struct{}, 2)
	never := agent.AskerFunc(func(ctx context.Context, _ agent.PermissionRequest) (agent.PermissionAnswer, error) {
		asking <- struct{}{}
		<-ctx.Done()
		return agent.PermissionAnswer{}, ctx.Err()
	})
	p, _ := a.Start(context.Background(), agent.Spec{ChatID: "c", Permissions: never})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-asking
		if n := p.(*Process).Asking(); n != 1 {
			t.Errorf("Asking() = %d while asking", n)
		}
		cancel()
	}()
	if _, err := p.Turn(ctx, []string{"TOOL_USE Bash {}"}); !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned turn: %v", err)
	}
	go func() { <-asking; p.Stop(context.Background()) }()
	if _, err := p.Turn(context.Background(), []string{"TOOL_USE Bash {}"}); agent.KindOf(err) != agent.Exited {
		t.Errorf("stopped while asking: %v", err)
	}
}
