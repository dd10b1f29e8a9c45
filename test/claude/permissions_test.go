package claude

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// These tests drive the Claude Code driver (not the daemon) with the real
// CLI against the fake API, whose TOOL_USE lines make the model call a
// tool: they check what each permission mode does with a write the CLI
// will not run unasked (touch), and that tool calls arrive as progress.

// driver is one test's fake API and CLI driver.
type driver struct {
	t    *testing.T
	api  *fakeapi.Server
	dir  string // the chats' working directories
	logs *syncbuf.Buffer
	cfg  claude.Config
}

func newDriver(t *testing.T, mode claude.PermissionMode) *driver {
	t.Helper()
	bin := claudeBin(t)
	s := fakeapi.New()
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	home := t.TempDir()
	d := &driver{t: t, api: s, dir: t.TempDir(), logs: &syncbuf.Buffer{}}
	d.cfg = claude.Config{
		Command: bin, Dir: d.dir, StopGrace: 2 * time.Second, Permissions: mode,
		Env: map[string]string{
			"ANTHROPIC_BASE_URL": s.URL(), "ANTHROPIC_API_KEY": "sk-ant-dummy-for-the-fake-api",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
			"CLAUDE_CODE_MAX_RETRIES": "0", "HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("driver log:\n%s", tail(d.logs.String(), 6000))
		}
	})
	return d
}

// start starts the CLI for chat with the asker and progress callback.
func (d *driver) start(chat string, ask agent.Asker, progress func(agent.Progress)) agent.Process {
	d.t.Helper()
	spec := agent.Spec{ChatID: chat, Permissions: ask, Progress: progress,
		Log: slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	p, err := claude.New(d.cfg).Start(context.Background(), spec)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			d.t.Errorf("Stop: %v", err)
		}
	})
	return p
}

// turn runs one turn and fails the test on an error.
func (d *driver) turn(p agent.Process, text string) agent.Result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), turnTimeout)
	defer cancel()
	res, err := p.Turn(ctx, []string{text})
	if err != nil {
		d.t.Fatalf("turn: %v", err)
	}
	return res
}

// exists reports whether chat's working directory holds name.
func (d *driver) exists(chat, name string) bool {
	_, err := os.Stat(filepath.Join(claude.ChatDir(d.dir, chat), name))
	return err == nil
}

// touchPrompt makes the fake's model run `touch name` with Bash.
func touchPrompt(name string) string {
	return "please make the file\n" + fakeapi.ToolMarker + ` Bash {"command":"touch ` + name + `"}`
}

// recordingAsker answers every request with answer and keeps them.
type recordingAsker struct {
	mu     sync.Mutex
	reqs   []agent.PermissionRequest
	answer agent.PermissionAnswer
}

func (a *recordingAsker) Ask(ctx context.Context, req agent.PermissionRequest) (agent.PermissionAnswer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = append(a.reqs, req)
	return a.answer, nil
}

func (a *recordingAsker) requests() []agent.PermissionRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]agent.PermissionRequest(nil), a.reqs...)
}

// TestAskAllowRunsTheTool: in ask mode the CLI asks before `touch`; the
// request carries the tool, its input and the CLI's description, and an
// allow runs the command: the file exists and the reply reflects the
// tool's success.
func TestAskAllowRunsTheTool(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	ask := &recordingAsker{answer: agent.PermissionAnswer{Allow: true}}
	var progress []agent.Progress
	var pmu sync.Mutex
	p := d.start("perm-allow", ask, func(pr agent.Progress) { pmu.Lock(); progress = append(progress, pr); pmu.Unlock() })
	res := d.turn(p, touchPrompt("allowed.txt"))
	if !d.exists("perm-allow", "allowed.txt") {
		t.Error("the allowed touch did not run")
	}
	if want := "fake reply after tools: Bash ok:"; !strings.HasPrefix(res.Text, want) {
		t.Errorf("reply %q, want it to start with %q", res.Text, want)
	}
	reqs := ask.requests()
	if len(reqs) != 1 {
		t.Fatalf("asked %d times, want 1: %+v", len(reqs), reqs)
	}
	r := reqs[0]
	if r.ID == "" || r.Tool != "Bash" || r.ToolUseID == "" || r.Summary != "touch allowed.txt" || r.Description != "touch allowed.txt" {
		t.Errorf("request %+v", r)
	}
	var in struct{ Command string }
	if err := json.Unmarshal(r.Input, &in); err != nil || in.Command != "touch allowed.txt" {
		t.Errorf("input %s (%v)", r.Input, err)
	}
	if len(res.Denials) != 0 {
		t.Errorf("denials %+v after an allow", res.Denials)
	}
	pmu.Lock()
	defer pmu.Unlock()
	if len(progress) != 1 || progress[0].Tool != "Bash" || progress[0].Summary != "touch allowed.txt" || progress[0].ToolUseID != r.ToolUseID {
		t.Errorf("progress %+v, want the one Bash call", progress)
	}
}

// TestAskAllowWithUpdatedInput: an allow may change the input; the CLI
// runs the changed call.
func TestAskAllowWithUpdatedInput(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	ask := &recordingAsker{answer: agent.PermissionAnswer{Allow: true, UpdatedInput: json.RawMessage(`{"command":"touch changed.txt"}`)}}
	p := d.start("perm-edit", ask, nil)
	d.turn(p, touchPrompt("asked.txt"))
	if d.exists("perm-edit", "asked.txt") || !d.exists("perm-edit", "changed.txt") {
		t.Error("the CLI did not run the updated input")
	}
}

// TestAskDenyRefusesTheTool: a deny keeps the command from running; its
// message becomes the tool's error result, which the reply reflects, and
// the result lists the refused call.
func TestAskDenyRefusesTheTool(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	ask := &recordingAsker{answer: agent.PermissionAnswer{Message: "the person said no"}}
	p := d.start("perm-deny", ask, nil)
	res := d.turn(p, touchPrompt("denied.txt"))
	if d.exists("perm-deny", "denied.txt") {
		t.Error("the denied touch ran")
	}
	if want := "fake reply after tools: Bash error: the person said no"; res.Text != want {
		t.Errorf("reply %q, want %q", res.Text, want)
	}
	if len(res.Denials) != 1 || res.Denials[0].Tool != "Bash" {
		t.Errorf("denials %+v", res.Denials)
	}
}

// TestAskWithoutAskerRefuses: ask mode with nobody to ask refuses at once
// rather than leave the CLI waiting.
func TestAskWithoutAskerRefuses(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	p := d.start("perm-nobody", nil, nil)
	res := d.turn(p, touchPrompt("nobody.txt"))
	if d.exists("perm-nobody", "nobody.txt") || !strings.Contains(res.Text, "Bash error: Permission denied: nobody can be asked") {
		t.Errorf("reply %q", res.Text)
	}
}

// TestAskTimeout: an asker that never answers is cut off after the
// permission timeout; the call is refused with that reason and the turn
// ends.
func TestAskTimeout(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	d.cfg.PermissionTimeout = 500 * time.Millisecond
	never := agent.AskerFunc(func(ctx context.Context, _ agent.PermissionRequest) (agent.PermissionAnswer, error) {
		<-ctx.Done()
		return agent.PermissionAnswer{}, ctx.Err()
	})
	p := d.start("perm-timeout", never, nil)
	res := d.turn(p, touchPrompt("late.txt"))
	if d.exists("perm-timeout", "late.txt") || !strings.Contains(res.Text, "nobody answered within 500ms") {
		t.Errorf("reply %q", res.Text)
	}
}

// TestAskAbandonedTurn: when the turn that asked is abandoned, its open
// request is refused, so the CLI does not wait forever.
func TestAskAbandonedTurn(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	asked := make(chan struct{})
	blocked := agent.AskerFunc(func(ctx context.Context, _ agent.PermissionRequest) (agent.PermissionAnswer, error) {
		close(asked)
		<-ctx.Done()
		return agent.PermissionAnswer{}, ctx.Err()
	})
	p := d.start("perm-abandon", blocked, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := p.Turn(ctx, []string{touchPrompt("never.txt")}); errc <- err }()
	select {
	case <-asked:
	case <-time.After(turnTimeout):
		t.Fatal("the CLI never asked")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned turn: %v", err)
	}
	// The CLI got the refusal: its next request carries the tool's error.
	deadline := time.Now().Add(turnTimeout)
	for {
		var got []fakeapi.ToolResult
		for _, r := range d.api.Requests() {
			if r.Request != nil {
				got = append(got, r.Request.ToolResults()...)
			}
		}
		if len(got) > 0 {
			if !got[0].IsError || !strings.Contains(got[0].Text, "the turn that asked was abandoned") {
				t.Errorf("tool result %+v", got[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the CLI never sent the refusal on")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.exists("perm-abandon", "never.txt") {
		t.Error("the abandoned turn's touch ran")
	}
}

// TestDenyModeListsDenials: without a way to ask, the CLI refuses on its
// own; the reply reflects the refusal and Result.Denials lists the call.
func TestDenyModeListsDenials(t *testing.T) {
	d := newDriver(t, claude.PermissionsDeny)
	ask := &recordingAsker{answer: agent.PermissionAnswer{Allow: true}}
	p := d.start("perm-denymode", ask, nil)
	res := d.turn(p, touchPrompt("refused.txt"))
	if d.exists("perm-denymode", "refused.txt") {
		t.Error("deny mode ran the touch")
	}
	if len(ask.requests()) != 0 {
		t.Error("deny mode asked")
	}
	if !strings.HasPrefix(res.Text, "fake reply after tools: Bash error: ") {
		t.Errorf("reply %q", res.Text)
	}
	if len(res.Denials) != 1 || res.Denials[0].Tool != "Bash" || !strings.Contains(string(res.Denials[0].Input), "touch refused.txt") {
		t.Errorf("denials %+v", res.Denials)
	}
}

// TestBypassRunsWithoutAsking: bypass runs the touch without asking. The
// CLI refuses --dangerously-skip-permissions as root unless IS_SANDBOX=1,
// which the test sets (CI may run as root).
func TestBypassRunsWithoutAsking(t *testing.T) {
	d := newDriver(t, claude.PermissionsBypass)
	d.cfg.Env["IS_SANDBOX"] = "1"
	ask := &recordingAsker{}
	p := d.start("perm-bypass", ask, nil)
	res := d.turn(p, touchPrompt("bypassed.txt"))
	if !d.exists("perm-bypass", "bypassed.txt") || !strings.HasPrefix(res.Text, "fake reply after tools: Bash ok:") {
		t.Errorf("reply %q", res.Text)
	}
	if len(ask.requests()) != 0 {
		t.Error("bypass asked")
	}
}

// TestAllowedToolsRunWithoutAsking: agent.allowed_tools passes
// --allowedTools; a matching call runs in deny mode without asking.
func TestAllowedToolsRunWithoutAsking(t *testing.T) {
	d := newDriver(t, claude.PermissionsDeny)
	d.cfg.AllowedTools = []string{"Bash(touch:*)"}
	p := d.start("perm-allowed", nil, nil)
	res := d.turn(p, touchPrompt("allowed-rule.txt"))
	if !d.exists("perm-allowed", "allowed-rule.txt") || len(res.Denials) != 0 {
		t.Errorf("reply %q, denials %+v", res.Text, res.Denials)
	}
}

// TestBrokerWithTheCLI: the permission broker as the CLI's asker. The
// first touch waits for a person; allow_always lets it run and stores a
// rule, so the chat's next touch runs without asking; the events say so.
func TestBrokerWithTheCLI(t *testing.T) {
	d := newDriver(t, claude.PermissionsAsk)
	st := permission.NewMemory()
	n := 0
	var nmu sync.Mutex
	b := permission.NewBroker(st, clock.Real{}, time.Minute, func() string {
		nmu.Lock()
		defer nmu.Unlock()
		n++
		return fmt.Sprintf("perm-%d", n)
	})
	p := d.start("perm-broker", b.Asker("perm-broker"), nil)
	go func() {
		for deadline := time.Now().Add(turnTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			open, _ := st.OpenRequests(context.Background(), "perm-broker")
			if len(open) > 0 {
				b.Decide(context.Background(), open[0].ID, permission.AllowAlways, "test")
				return
			}
		}
	}()
	if res := d.turn(p, touchPrompt("first.txt")); !d.exists("perm-broker", "first.txt") {
		t.Fatalf("first touch did not run: %q", res.Text)
	}
	if res := d.turn(p, touchPrompt("second.txt")); !d.exists("perm-broker", "second.txt") {
		t.Fatalf("second touch did not run: %q", res.Text)
	}
	evs := st.Events()
	if len(evs) != 2 || evs[0].Type != events.PermissionRequest || evs[0].Summary != "touch first.txt" ||
		evs[1].Type != events.PermissionDecided || evs[1].Decision != "allow_always" || evs[1].By != "test" {
		t.Errorf("events %+v", evs)
	}
}
