package claude

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/agent"
)

// stubPath is the stubclaude binary built once for the package's tests.
var stubPath string

func TestMain(m *testing.M) {
	if os.Getenv("CLAUDE_TEST_DAEMON") != "" {
		fakeDaemon()
		return
	}
	dir, err := os.MkdirTemp("", "stubclaude")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stubPath = filepath.Join(dir, "stubclaude")
	out, err := exec.Command("go", "build", "-o", stubPath, "github.com/dispatchd/dispatch/internal/testutil/stubclaude").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build stubclaude: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 1
	defer func() { os.RemoveAll(dir); os.Exit(code) }()
	goleak.VerifyTestMain(exitCode{&code, m})
}

// exitCode lets TestMain clean up after goleak has run the tests.
type exitCode struct {
	code *int
	m    *testing.M
}

func (e exitCode) Run() int { *e.code = e.m.Run(); return *e.code }

const grace = 200 * time.Millisecond

// harness is one test's stub environment.
type harness struct {
	t        *testing.T
	state    string // STUB_STATE_DIR
	hanging  string // STUB_HANG_FILE
	argsLog  string // STUB_ARGS_LOG
	cfg      Config
	logs     *syncbuf.Buffer
	children string
}

func newHarness(t *testing.T, env ...string) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		t:       t,
		state:   filepath.Join(dir, "state"),
		argsLog: filepath.Join(dir, "args.log"),
		hanging: filepath.Join(dir, "hanging"),
		logs:    &syncbuf.Buffer{},
	}
	h.children = filepath.Join(h.state, "children.pids")
	h.cfg = Config{
		Command:   stubPath,
		StopGrace: grace,
		Env:       map[string]string{"STUB_STATE_DIR": h.state, "STUB_ARGS_LOG": h.argsLog, "STUB_HANG_FILE": h.hanging},
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		h.cfg.Env[k] = v
	}
	return h
}

// waitHanging waits (bounded) until the stub has read a HANG turn and
// hangs.
func (h *harness) waitHanging() {
	h.t.Helper()
	if err := waitFile(h.hanging); err != nil {
		h.t.Fatal(err)
	}
}

// waitFile polls (bounded) for a file another process creates.
func waitFile(path string) error {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never appeared", path)
		}
	}
}

// start starts a process and stops it when the test ends.
func (h *harness) start(id string, resume bool) *Process {
	h.t.Helper()
	spec := agent.Spec{ChatID: "chat", SessionID: id, Resume: resume,
		Log: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	p, err := New(h.cfg).Start(context.Background(), spec)
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	h.t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			h.t.Errorf("Stop: %v", err)
		}
	})
	return p.(*Process)
}

// argsRecords reads the stub's per-invocation records.
func (h *harness) argsRecords() []argsRecord {
	h.t.Helper()
	b, err := os.ReadFile(h.argsLog)
	if err != nil {
		h.t.Fatalf("args log: %v", err)
	}
	var recs []argsRecord
	for line := range bytes.Lines(b) {
		var r argsRecord
		if err := json.Unmarshal(line, &r); err != nil {
			h.t.Fatalf("args log line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

type argsRecord struct {
	Argv          []string          `json:"argv"`
	Cwd           string            `json:"cwd"`
	ClaudeCode    string            `json:"claudecode"`
	ClaudeCodeSet bool              `json:"claudecode_set"`
	Env           map[string]string `json:"env"`
}

func turn(t *testing.T, p agent.Process, texts ...string) (agent.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Turn(ctx, texts)
}

func mustTurn(t *testing.T, p agent.Process, want string, texts ...string) agent.Result {
	t.Helper()
	res, err := turn(t, p, texts...)
	if err != nil {
		t.Fatalf("Turn(%q): %v", texts, err)
	}
	if res.Text != want {
		t.Fatalf("Turn(%q) = %q, want %q", texts, res.Text, want)
	}
	return res
}

func wantKind(t *testing.T, err error, k agent.Kind) *agent.TurnError {
	t.Helper()
	var te *agent.TurnError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want a *agent.TurnError of kind %v", err, err, k)
	}
	if te.Kind != k {
		t.Fatalf("kind = %v (%v), want %v", te.Kind, te, k)
	}
	return te
}

func waitDone(t *testing.T, p agent.Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process not done")
	}
}

func TestReply(t *testing.T) {
	h := newHarness(t)
	p := h.start("sess-1", false)
	if p.Pid() <= 0 {
		t.Fatalf("Pid = %d", p.Pid())
	}
	before := p.LastOutput()
	res := mustTurn(t, p, "echo: hello (turn 1)", "hello")
	if res.SessionID != "sess-1" || p.SessionID() != "sess-1" {
		t.Errorf("session id = %q / %q", res.SessionID, p.SessionID())
	}
	if res.Duration <= 0 {
		t.Errorf("Duration = %v", res.Duration)
	}
	if !p.LastOutput().After(before) {
		t.Errorf("LastOutput not advanced")
	}
	// Several texts are one user message with one block each.
	mustTurn(t, p, "echo: a\nb <&> \"q\" (turn 2)", "a", "b <&> \"q\"")
}

func TestSessionIDFromInit(t *testing.T) {
	// The stub honours the last --session-id, so an extra one in Args makes
	// it report an id other than the one dispatch passed.
	h := newHarness(t)
	h.cfg.Args = []string{"--session-id", "from-cli"}
	p := h.start("given", false)
	res := mustTurn(t, p, "echo: x (turn 1)", "x")
	if res.SessionID != "from-cli" || p.SessionID() != "from-cli" {
		t.Errorf("session id = %q / %q, want the init line's", res.SessionID, p.SessionID())
	}

	// A resumed run keeps the id it resumed with, whatever init says.
	h2 := newHarness(t, "STUB_RESUME_NEW_ID=1")
	p2 := h2.start("conv", false)
	mustTurn(t, p2, "echo: one (turn 1)", "one")
	if err := p2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	p3 := h2.start("conv", true)
	res = mustTurn(t, p3, "echo: two (turn 2)", "two")
	if res.SessionID != "conv" || p3.SessionID() != "conv" {
		t.Errorf("resumed session id = %q / %q, want conv", res.SessionID, p3.SessionID())
	}
}

func TestGeneratedSessionID(t *testing.T) {
	h := newHarness(t)
	p := h.start("", false)
	mustTurn(t, p, "echo: x (turn 1)", "x")
	id := p.SessionID()
	if len(id) != 36 {
		t.Fatalf("generated id %q is not a uuid", id)
	}
	if argv := h.argsRecords()[0].Argv; !slices.Contains(argv, id) {
		t.Errorf("argv %q lacks %q", argv, id)
	}
}

func TestArgvEnvDir(t *testing.T) {
	t.Setenv("CLAUDECODE", "1")
	t.Setenv("DISPATCH_TEST_INHERITED", "inherited")
	t.Setenv("DISPATCH_TEST_OVERRIDE", "inherited")
	h := newHarness(t, "STUB_LOG_ENV=DISPATCH_TEST_INHERITED,DISPATCH_TEST_OVERRIDE,DISPATCH_TEST_CFG,DISPATCH_TEST_SPEC")
	h.cfg.Args = []string{"--model", "opus"}
	h.cfg.Env["DISPATCH_TEST_OVERRIDE"] = "cfg"
	h.cfg.Env["DISPATCH_TEST_CFG"] = "cfg"
	h.cfg.Dir = filepath.Join(t.TempDir(), "work", "dir") // missing: created
	h.cfg.EnvPassthrough = []string{"DISPATCH_TEST_INHERITED", "DISPATCH_TEST_OVER*"}

	spec := agent.Spec{SessionID: "new-id", Env: map[string]string{"DISPATCH_TEST_SPEC": "spec", "DISPATCH_TEST_CFG": "spec"}}
	p, err := New(h.cfg).Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	mustTurn(t, p, "echo: x (turn 1)", "x")
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	p = h.start("new-id", true)
	mustTurn(t, p, "echo: y (turn 2)", "y")

	recs := h.argsRecords()
	if len(recs) != 2 {
		t.Fatalf("%d invocations, want 2", len(recs))
	}
	base := "-p --input-format stream-json --output-format stream-json --verbose "
	if got, want := strings.Join(recs[0].Argv, " "), base+"--session-id new-id --model opus"; got != want {
		t.Errorf("fresh argv = %q, want %q", got, want)
	}
	if got, want := strings.Join(recs[1].Argv, " "), base+"--resume new-id --model opus"; got != want {
		t.Errorf("resume argv = %q, want %q", got, want)
	}
	r := recs[0]
	if r.ClaudeCodeSet {
		t.Errorf("CLAUDECODE=%q reached the agent", r.ClaudeCode)
	}
	wantEnv := map[string]string{
		"DISPATCH_TEST_INHERITED": "inherited", "DISPATCH_TEST_OVERRIDE": "cfg",
		"DISPATCH_TEST_CFG": "spec", "DISPATCH_TEST_SPEC": "spec",
	}
	for k, v := range wantEnv {
		if r.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, r.Env[k], v)
		}
	}
	if r.Cwd != h.cfg.Dir {
		t.Errorf("cwd = %q, want %q", r.Cwd, h.cfg.Dir)
	}
}

func TestEnviron(t *testing.T) {
	base := []string{"PATH=/bin", "CLAUDECODE=1", "HOME=/h", "LC_ALL=C", "AWS_SECRET_ACCESS_KEY=s",
		"SSH_AUTH_SOCK=/tmp/agent", "OTEL_A=1", "OTEL_B=2", "KEEP=k", "B=2"}
	got := Environ(base, []string{"KEEP", "OTEL_*", "CLAUDECODE"},
		map[string]string{"B": "cfg", "D": "cfg"}, map[string]string{"D": "spec"})
	want := []string{"B=cfg", "D=spec", "HOME=/h", "KEEP=k", "LC_ALL=C", "OTEL_A=1", "OTEL_B=2", "PATH=/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("environ = %q, want %q", got, want)
	}
}

func TestResumeContinues(t *testing.T) {
	h := newHarness(t)
	p := h.start("conv-1", false)
	mustTurn(t, p, "echo: one (turn 1)", "one")
	mustTurn(t, p, "echo: two (turn 2)", "two")
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr after a clean stop = %v", err)
	}
	p = h.start("conv-1", true)
	mustTurn(t, p, "echo: three (turn 3)", "three")
}

func TestResumeFailed(t *testing.T) {
	h := newHarness(t)
	p := h.start("no-such-id", true)
	_, err := turn(t, p, "hello")
	te := wantKind(t, err, agent.ResumeFailed)
	if !strings.Contains(te.Msg, "No conversation found") {
		t.Errorf("Msg = %q", te.Msg)
	}
	waitDone(t, p)
	if k := agent.KindOf(p.ExitErr()); k != agent.ResumeFailed {
		t.Errorf("ExitErr = %v, want resume_failed", p.ExitErr())
	}
	// Without any turn the exit alone tells.
	p2 := h.start("no-such-id-2", true)
	waitDone(t, p2)
	if k := agent.KindOf(p2.ExitErr()); k != agent.ResumeFailed {
		t.Errorf("ExitErr = %v, want resume_failed", p2.ExitErr())
	}
}

func TestCrash(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	mustTurn(t, p, "echo: ok (turn 1)", "ok")
	_, err := turn(t, p, "please CRASH")
	te := wantKind(t, err, agent.Exited)
	if !strings.Contains(te.Msg, "exit status 3") || !strings.Contains(te.Msg, "crashing on CRASH") {
		t.Errorf("Msg = %q, want exit status and stderr tail", te.Msg)
	}
	waitDone(t, p)
	wantKind(t, p.ExitErr(), agent.Exited)
	// A turn after the exit fails at once, uncharged.
	_, err = turn(t, p, "again")
	wantKind(t, err, agent.Undelivered)
	if !strings.Contains(h.logs.String(), "crashing on CRASH") {
		t.Errorf("stderr not logged: %s", h.logs)
	}
}

func TestCrashOnStart(t *testing.T) {
	h := newHarness(t, "STUB_CRASH_ON_START=1")
	p := h.start("s", false)
	waitDone(t, p)
	te := wantKind(t, p.ExitErr(), agent.Exited)
	if !strings.Contains(te.Msg, "exit status 2") {
		t.Errorf("Msg = %q", te.Msg)
	}
	_, err := turn(t, p, "x")
	wantKind(t, err, agent.Undelivered) // never taken: not the message's fault
}

func TestDiesBeforeTakingTheTurn(t *testing.T) {
	h := newHarness(t, "STUB_CRASH_ON_START=1")
	p := h.start("s", false)
	_, err := turn(t, p, "x") // written (or not) while the stub exits at start
	wantKind(t, err, agent.Undelivered)
}

func TestErrorResults(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	for _, tt := range []struct {
		text   string
		kind   agent.Kind
		status int
	}{
		{"ERROR", agent.Fault, 0},
		{"OUTAGE", agent.Outage, 0},
		{"OVERLOADED", agent.Outage, 529},
		{"TOOLONG", agent.ContextTooLong, 400},
	} {
		_, err := turn(t, p, tt.text)
		te := wantKind(t, err, tt.kind)
		if te.Status != tt.status {
			t.Errorf("%s: Status = %d, want %d", tt.text, te.Status, tt.status)
		}
	}
	// The process survives error results; like the CLI, only turns that
	// failed at the API (OUTAGE, OVERLOADED) stay in the conversation.
	mustTurn(t, p, "echo: fine (turn 3)", "fine")
}

func TestOutageFile(t *testing.T) {
	h := newHarness(t)
	flag := filepath.Join(t.TempDir(), "outage")
	h.cfg.Env["STUB_OUTAGE_FILE"] = flag
	p := h.start("s", false)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := turn(t, p, "hi")
	wantKind(t, err, agent.Outage)
	os.Remove(flag)
	mustTurn(t, p, "echo: hi (turn 2)", "hi") // the failed try stays in the conversation
}

func TestHangStop(t *testing.T) {
	for _, tt := range []struct {
		name   string
		env    []string
		budget time.Duration
	}{
		{"sigterm", nil, 2*grace + grace/2},
		{"sigkill", []string{"STUB_IGNORE_TERM=1"}, 3 * grace},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.env...)
			p := h.start("s", false)
			errc := make(chan error, 1)
			go func() {
				_, err := turn(t, p, "HANG")
				errc <- err
			}()
			h.waitHanging() // the turn was written and read

			start := time.Now()
			var wg sync.WaitGroup
			for range 2 { // concurrent and repeated Stops are fine
				wg.Go(func() {
					if err := p.Stop(context.Background()); err != nil {
						t.Errorf("Stop: %v", err)
					}
				})
			}
			wg.Wait()
			if d := time.Since(start); d > tt.budget+2*time.Second { // slack for loaded CI
				t.Errorf("Stop took %v, want about %v", d, tt.budget)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Done not closed after Stop")
			}
			if !reaped(p.Pid()) {
				t.Errorf("pid %d not reaped", p.Pid())
			}
			// the stub read the turn and hangs before acknowledging it
			wantKind(t, <-errc, agent.ExitedSilent)
			if err := p.Stop(context.Background()); err != nil {
				t.Errorf("Stop again: %v", err)
			}
		})
	}
}

func TestStopContext(t *testing.T) {
	h := newHarness(t, "STUB_IGNORE_TERM=1")
	h.cfg.StopGrace = time.Hour
	p := h.start("s", false)
	go turn(t, p, "HANG") //nolint:errcheck // ends with the process
	h.waitHanging()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want deadline exceeded", err)
	}
	waitDone(t, p) // SIGKILLed at once
}

func TestGrandchildKilled(t *testing.T) {
	for _, how := range []string{"stop", "crash"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t, "STUB_SPAWN_CHILD=1")
			p := h.start("s", false)
			mustTurn(t, p, "echo: hi (turn 1)", "hi")
			b, err := os.ReadFile(h.children)
			if err != nil {
				t.Fatal(err)
			}
			child, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if reaped(child) {
				t.Fatalf("child %d not running", child)
			}
			if how == "stop" {
				if err := p.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				// The grandchild holds stdout: Done must still close.
				_, err := turn(t, p, "CRASH")
				wantKind(t, err, agent.Exited)
			}
			waitDone(t, p)
			deadline := time.Now().Add(5 * time.Second)
			for !reaped(child) {
				if time.Now().After(deadline) {
					t.Fatalf("grandchild %d survived", child)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// reaped reports whether pid is gone or a zombie about to be reaped by init.
func reaped(pid int) bool {
	if runtime.GOOS != "linux" {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// state follows the parenthesised command name
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z") || strings.HasPrefix(s[i+1:], " X")
}

func TestBigLine(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	mustTurn(t, p, "echo: BIGLINE=5000000 (turn 1)", "BIGLINE=5000000")
	mustTurn(t, p, "echo: after (turn 2)", "after")
}

func TestUnknownLinesIgnored(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	mustTurn(t, p, "echo: UNKNOWN (turn 1)", "UNKNOWN")
	mustTurn(t, p, "echo: next (turn 2)", "next")
	logs := h.logs.String()
	if !strings.Contains(logs, "stub_mystery") || !strings.Contains(logs, "this line is not JSON") {
		t.Errorf("ignored lines not logged at debug:\n%s", logs)
	}
}

func TestAbandonedTurn(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Turn(ctx, []string{"SLEEP=400ms slow"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Turn = %v, want deadline exceeded", err)
	}
	// The late result of the abandoned turn is not taken for this one's.
	mustTurn(t, p, "echo: quick (turn 2)", "quick")
}

func TestStartError(t *testing.T) {
	_, err := New(Config{Command: filepath.Join(t.TempDir(), "missing")}).Start(context.Background(), agent.Spec{SessionID: "x"})
	if err == nil {
		t.Fatal("Start of a missing command succeeded")
	}
	_, err = New(Config{Command: stubPath}).Start(context.Background(), agent.Spec{Resume: true})
	if err == nil {
		t.Fatal("resume without an id succeeded")
	}
}

func TestReadLine(t *testing.T) {
	in := strings.Repeat("a", 100) + "\nshort\r\n" + strings.Repeat("b", 50) + "\nlast"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, tooLong, err := readLine(r, 60)
		got = append(got, fmt.Sprintf("%d:%v", len(line), tooLong))
		if err != nil {
			break
		}
	}
	want := []string{"60:true", "5:false", "50:false", "4:false"}
	if !slices.Equal(got, want) {
		t.Errorf("readLine = %v, want %v", got, want)
	}
}

// fakeDaemon plays the daemon for TestDaemonKilled: it starts the stub at
// $CLAUDE_TEST_DAEMON, prints its pid and waits to be killed.
func fakeDaemon() {
	p, err := New(Config{Command: os.Getenv("CLAUDE_TEST_DAEMON"),
		Env: map[string]string{"STUB_HANG_FILE": os.Getenv("STUB_HANG_FILE")}}).Start(context.Background(), agent.Spec{SessionID: "d"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	// A hung stub never reads stdin again, so only the parent death signal
	// can end it, not the EOF that the daemon's death causes.
	go p.Turn(context.Background(), []string{"HANG"}) //nolint:errcheck // never returns
	if err := waitFile(os.Getenv("STUB_HANG_FILE")); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(p.Pid())
	select {}
}

// TestDaemonKilled: a kill -9 of the daemon takes the agent with it.
func TestDaemonKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parent death signal is Linux-only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CLAUDE_TEST_DAEMON="+stubPath, "STUB_STATE_DIR="+t.TempDir(),
		"STUB_HANG_FILE="+filepath.Join(t.TempDir(), "hanging"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("fake daemon: %q, %v", line, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("fake daemon said %q", line)
	}
	if reaped(pid) {
		t.Fatalf("agent %d not running", pid)
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !reaped(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("agent %d outlived its daemon", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every agent's process group is handed to Watch when it starts and
// released when it ended, before it is reaped; the API probe's is not.
func TestWatchedGroups(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	watched := map[int]bool{}
	h.cfg.Watch = func(pgid int) func() {
		mu.Lock()
		defer mu.Unlock()
		watched[pgid] = true
		return func() {
			mu.Lock()
			defer mu.Unlock()
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pgid)); err != nil {
				t.Errorf("group %d released after its leader was reaped", pgid)
			}
			delete(watched, pgid)
		}
	}
	p := h.start("", false)
	mu.Lock()
	if !watched[p.Pid()] || len(watched) != 1 {
		t.Errorf("watched %v, want the agent's group %d", watched, p.Pid())
	}
	mu.Unlock()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(watched) != 0 {
		t.Errorf("still watched after the agent ended: %v", watched)
	}
	mu.Unlock()
	probe, err := New(h.cfg).Start(context.Background(), agent.Spec{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(watched) != 0 {
		t.Errorf("the probe's group was watched: %v", watched)
	}
}

// A CLI that exits cleanly after answering while a child it daemonized
// (a session of its own: the group kill misses it) holds its stdout open:
// the process is draining its output, its input already closed. A turn
// handed over then returns only once the process is known to have ended
// (Done closed), so that the caller judges the exit and does not take a
// clean exit for an agent that will not read (found by the fault hunt: a
// restart counted for each clean exit).
func TestTurnDuringTheDrainAfterACleanExit(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	t.Cleanup(func() {
		b, _ := os.ReadFile(h.children)
		for _, l := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(l); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	mustTurn(t, p, "echo: DAEMONIZE (turn 1)", "DAEMONIZE")
	for deadline := time.Now().Add(10 * time.Second); !p.exited(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the CLI did not exit")
		}
	}
	select {
	case <-p.Done():
		t.Fatal("Done closed at once: the daemonized child did not hold stdout")
	default:
	}
	_, err := turn(t, p, "next")
	wantKind(t, err, agent.Undelivered)
	select {
	case <-p.Done():
	default:
		t.Fatal("the turn returned while the process was still draining: its end was not told")
	}
	if err := p.ExitErr(); err != nil {
		t.Errorf("ExitErr = %v, want a clean exit", err)
	}
}

// An agent that stops reading its input: the bytes of the turn handed to
// it stay in the pipe, which UnreadInput reports (the turn never reached
// it); an agent that reads leaves none.
func TestUnreadInput(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	mustTurn(t, p, "echo: hi (turn 1)", "hi")
	if n := p.UnreadInput(); n != 0 {
		t.Fatalf("UnreadInput = %d after a turn it read", n)
	}
	mustTurn(t, p, "echo: DEAF (turn 2)", "DEAF")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := p.Turn(ctx, []string{"never read"}); ctx.Err() == nil {
		t.Fatalf("Turn = %v, want it abandoned", err)
	}
	if n := p.UnreadInput(); n == 0 {
		t.Fatal("UnreadInput = 0 for a turn the agent never read")
	}
}

// The CLI's system/api_retry lines are the evidence of when a failing turn
// began to fail (FirstRetry): the first one since the turn was written;
// none for a turn that failed without retrying, or before the turn.
func TestFirstRetry(t *testing.T) {
	h := newHarness(t)
	p := h.start("s", false)
	before := time.Now()
	_, err := turn(t, p, "OUTAGE RETRYING")
	after := time.Now()
	wantKind(t, err, agent.Outage)
	first := p.FirstRetry(before)
	if first.IsZero() || first.Before(before) || !first.Before(after.Add(-50*time.Millisecond)) {
		t.Fatalf("FirstRetry = %v, want the first retry line's time, between %v and %v", first, before, after)
	}
	if got := p.FirstRetry(after); !got.IsZero() {
		t.Errorf("FirstRetry(after the turn) = %v, want none", got)
	}
	since := time.Now()
	_, err = turn(t, p, "OUTAGE at once")
	wantKind(t, err, agent.Outage)
	if got := p.FirstRetry(since); !got.IsZero() {
		t.Errorf("a turn that did not retry: FirstRetry = %v, want none", got)
	}
}
