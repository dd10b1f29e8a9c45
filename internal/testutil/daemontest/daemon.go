package daemontest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/wire"
)

// StopTimeout is how long the cleanup waits for the daemon to exit after
// SIGTERM before it kills the process group and fails the test.
const StopTimeout = 20 * time.Second

// Daemon is one dispatch daemon under test (and its state, which outlives
// the process: Restart starts a new daemon on the same state dir).
type Daemon struct {
	t *testing.T

	// Base is the test's temporary directory; everything below lives in it.
	Base string
	// StateDir is the daemon's state_dir.
	StateDir string
	// ConfigPath is the YAML config the daemon and Run use.
	ConfigPath string
	// StubDir is the stub's STUB_STATE_DIR (conversations, children.pids).
	StubDir string
	// ArgsLog is the stub's STUB_ARGS_LOG.
	ArgsLog string
	// Bin and Stub are the dispatch binary and the stub CLI.
	Bin, Stub string

	client *client.Client

	mu      sync.Mutex
	proc    *process // the current (or last) daemon process
	starts  int
	killed9 bool // a kill -9 may have left grandchildren behind
}

// process is one run of the daemon binary.
type process struct {
	cmd     *exec.Cmd
	pid     int
	stderr  string // file with the daemon's stdout and stderr
	started time.Time
	exited  chan struct{}
	code    int // valid after exited
	waitErr error
}

// Start writes the config (defaults of this package, then opts), starts a
// daemon and waits until it serves /healthz. The daemon is stopped and its
// directory removed when the test ends.
func Start(t *testing.T, opts Options) *Daemon {
	t.Helper()
	d := New(t, opts)
	d.Restart()
	return d
}

// New prepares a daemon's directory and config without starting it.
func New(t *testing.T, opts Options) *Daemon {
	t.Helper()
	bin, stub := Binaries(t)
	base, err := os.MkdirTemp("", "dt-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		t:          t,
		Base:       base,
		StateDir:   filepath.Join(base, "state"),
		ConfigPath: filepath.Join(base, "dispatch.yaml"),
		StubDir:    filepath.Join(base, "stub"),
		ArgsLog:    filepath.Join(base, "stub", "args.jsonl"),
		Bin:        bin,
		Stub:       stub,
	}
	if n := len(filepath.Join(d.StateDir, "dispatch.sock")); n > wire.MaxSocketPath() {
		os.RemoveAll(base)
		t.Fatalf("daemontest: socket path %d bytes long; set TMPDIR to something shorter", n)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // runs last
	if err := os.MkdirAll(d.StubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(d.StateDir, stub, d.StubDir, d.ArgsLog)
	if err := applyOptions(cfg, opts); err != nil {
		t.Fatal(err)
	}
	data, err := marshalConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d.client, err = client.New(client.Options{
		Socket: filepath.Join(d.StateDir, "dispatch.sock"), Timeout: 30 * time.Second, NoKeepAlive: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	return d
}

// Restart starts the daemon (again) on the same state dir and config and
// waits until it serves /healthz. The previous run must have exited.
func (d *Daemon) Restart() {
	d.t.Helper()
	if d.Running() {
		d.t.Fatal("daemontest: Restart while the daemon is running")
	}
	p := d.spawn()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.exited:
			d.t.Fatalf("daemon exited during startup (code %d, %v):\n%s", p.code, p.waitErr, tail(readFile(p.stderr), 4000))
		default:
		}
		if st, _, err := d.Do("GET", "/healthz", nil); err == nil && st == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not serve /healthz within 20s:\n%s", tail(readFile(p.stderr), 4000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Spawn starts `dispatch daemon` without waiting for it to serve: for
// tests of startup failures. Use Wait to collect it.
func (d *Daemon) Spawn() {
	d.t.Helper()
	if d.Running() {
		d.t.Fatal("daemontest: Spawn while the daemon is running")
	}
	d.spawn()
}

func (d *Daemon) spawn() *process {
	d.t.Helper()
	d.mu.Lock()
	d.starts++
	n := d.starts
	d.mu.Unlock()
	logPath := filepath.Join(d.Base, fmt.Sprintf("daemon-%d.out", n))
	f, err := os.Create(logPath)
	if err != nil {
		d.t.Fatal(err)
	}
	cmd := d.Cmd("daemon", "--log-stderr") // Output has the manager log
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		d.t.Fatalf("start daemon: %v", err)
	}
	f.Close()
	p := &process{cmd: cmd, pid: cmd.Process.Pid, stderr: logPath, started: time.Now(), exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.waitErr = err
		p.code = exitCode(cmd, err)
		if p.code == 128+int(syscall.SIGKILL) {
			d.mu.Lock()
			d.killed9 = true // however it was killed
			d.mu.Unlock()
		}
		close(p.exited)
	}()
	d.mu.Lock()
	d.proc = p
	d.mu.Unlock()
	return p
}

// Cmd is an exec.Cmd running the dispatch binary with args and --config
// (appended last, so options after positional arguments are exercised).
// DISPATCH_CONFIG and DISPATCH_STATE_DIR are removed from its environment.
func (d *Daemon) Cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(d.Bin, append(args, "--config", d.ConfigPath)...)
	cmd.Env = cleanEnv()
	cmd.Dir = d.Base
	return cmd
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DISPATCH_CONFIG", "DISPATCH_STATE_DIR", "CLAUDECODE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func exitCode(cmd *exec.Cmd, err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

func (d *Daemon) current() *process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}

// Running reports whether the daemon process is running.
func (d *Daemon) Running() bool {
	p := d.current()
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the daemon's pid (of the current or last run).
func (d *Daemon) Pid() int {
	if p := d.current(); p != nil {
		return p.pid
	}
	return 0
}

// Wait waits up to timeout for the daemon to exit and returns its exit
// code (128+signal when it was killed by a signal).
func (d *Daemon) Wait(timeout time.Duration) (code int, exited bool) {
	p := d.current()
	if p == nil {
		return -1, true
	}
	select {
	case <-p.exited:
		return p.code, true
	case <-time.After(timeout):
		return -1, false
	}
}

// Signal sends sig to the daemon process (not its agents).
func (d *Daemon) Signal(sig syscall.Signal) {
	d.t.Helper()
	if p := d.current(); p != nil && d.Running() {
		if err := syscall.Kill(p.pid, sig); err != nil {
			d.t.Fatalf("signal daemon: %v", err)
		}
	}
}

// Term sends SIGTERM and waits (up to StopTimeout, failing the test after)
// for the daemon to exit; it returns the exit code and how long it took.
func (d *Daemon) Term() (code int, took time.Duration) {
	d.t.Helper()
	start := time.Now()
	d.Signal(syscall.SIGTERM)
	code, ok := d.Wait(StopTimeout)
	if !ok {
		d.t.Fatalf("daemon did not exit within %s of SIGTERM", StopTimeout)
	}
	return code, time.Since(start)
}

// Kill9 kills the daemon process with SIGKILL (only the daemon itself: its
// agents are in their own process groups) and waits for it to be reaped.
// After a kill -9 the cleanup tolerates (and kills) grandchildren of the
// agents that outlived it; otherwise any process left with the daemon's
// state dir in its environment fails the test.
func (d *Daemon) Kill9() {
	d.t.Helper()
	d.mu.Lock()
	d.killed9 = true
	d.mu.Unlock()
	d.Signal(syscall.SIGKILL)
	if _, ok := d.Wait(10 * time.Second); !ok {
		d.t.Fatal("daemon still running 10s after SIGKILL")
	}
}

// Output is everything the daemon processes wrote to stdout and stderr,
// all runs in order.
func (d *Daemon) Output() string {
	d.mu.Lock()
	n := d.starts
	d.mu.Unlock()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "--- daemon run %d ---\n", i)
		b.WriteString(readFile(filepath.Join(d.Base, fmt.Sprintf("daemon-%d.out", i))))
	}
	return b.String()
}

// cleanup stops a running daemon, kills leftover agent processes and, when
// the test failed, logs the daemon's output and lifecycle log.
func (d *Daemon) cleanup() {
	t := d.t
	if d.Running() {
		d.Signal(syscall.SIGTERM)
		if _, ok := d.Wait(StopTimeout); !ok {
			t.Errorf("daemontest: daemon did not exit within %s of SIGTERM; killing its group", StopTimeout)
			if p := d.current(); p != nil {
				_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			}
			d.Wait(10 * time.Second)
		}
	}
	left := d.WaitNoProcs(3 * time.Second)
	if len(left) > 0 {
		d.mu.Lock()
		k9 := d.killed9
		d.mu.Unlock()
		if k9 {
			t.Logf("daemontest: after a kill -9, %d processes of this state dir were left; killing them: %v", len(left), left)
		} else {
			t.Errorf("daemontest: processes outlived the daemon: %v", left)
		}
		for _, p := range left {
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		d.WaitNoProcs(5 * time.Second)
	}
	if t.Failed() {
		t.Logf("daemon output:\n%s", tail(d.Output(), 20000))
		t.Logf("lifecycle log:\n%s", tail(readFile(d.LifecyclePath()), 8000))
	}
}

// --- HTTP over the control socket ---

// Do sends a request to the daemon's control socket and returns the
// answer's status and body, whatever the status. body is nil, a []byte or
// string sent as is, or a value encoded as JSON. Safe to call from any
// goroutine.
func (d *Daemon) Do(method, path string, body any) (int, []byte, error) {
	return d.client.Raw(context.Background(), method, path, body)
}

// Client is the daemon's API client (internal/client), for the typed calls.
func (d *Daemon) Client() *client.Client { return d.client }

// Post sends a POST; a transport error fails the test (call it from the
// test goroutine).
func (d *Daemon) Post(path string, body any) (int, []byte) {
	d.t.Helper()
	st, data, err := d.Do("POST", path, body)
	if err != nil {
		d.t.Fatalf("POST %s: %v", path, err)
	}
	return st, data
}

// Get sends a GET; a transport error fails the test.
func (d *Daemon) Get(path string) (int, []byte) {
	d.t.Helper()
	st, data, err := d.Do("GET", path, nil)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	return st, data
}

// HasMetrics reports whether GET /metrics holds every one of lines, each a
// series with its value as Prometheus prints it
// (`dispatch_channel_connected{channel="slack"} 1`).
func (d *Daemon) HasMetrics(lines ...string) bool {
	code, body := d.Get("/metrics")
	if code != http.StatusOK {
		return false
	}
	for _, want := range lines {
		if !strings.Contains(string(body), want) {
			return false
		}
	}
	return true
}

// getJSON GETs path, requires 200 and decodes the answer into out.
func (d *Daemon) getJSON(path string, out any) {
	d.t.Helper()
	st, data := d.Get(path)
	if st != http.StatusOK {
		d.t.Fatalf("GET %s: HTTP %d: %s", path, st, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		d.t.Fatalf("GET %s: decode %q: %v", path, data, err)
	}
}

// Status is GET /v1/status.
func (d *Daemon) Status() wire.Status {
	d.t.Helper()
	var st wire.Status
	d.getJSON("/v1/status", &st)
	return st
}

// Session is chat's entry in Status; ok is false if it has none.
func (d *Daemon) Session(chat string) (wire.SessionStatus, bool) {
	d.t.Helper()
	for _, s := range d.Status().Sessions {
		if s.ChatID == chat {
			return s, true
		}
	}
	return wire.SessionStatus{}, false
}

// MustSession is Session, failing the test if the chat has no session.
func (d *Daemon) MustSession(chat string) wire.SessionStatus {
	d.t.Helper()
	s, ok := d.Session(chat)
	if !ok {
		d.t.Fatalf("no session for chat %q in status", chat)
	}
	return s
}

// Send accepts a message over the API (202 required) and returns its id.
func (d *Daemon) Send(chat, text string) string {
	d.t.Helper()
	st, data := d.Post("/v1/messages", api.MessageIn{ChatID: chat, Text: text})
	if st != http.StatusAccepted {
		d.t.Fatalf("send to %q: HTTP %d: %s", chat, st, data)
	}
	var acc api.Accepted
	if err := json.Unmarshal(data, &acc); err != nil || acc.ID == "" {
		d.t.Fatalf("send to %q: bad answer %q: %v", chat, data, err)
	}
	return acc.ID
}

// Message is GET /v1/messages/{id}.
func (d *Daemon) Message(id string) api.MessageOut {
	d.t.Helper()
	var m api.MessageOut
	d.getJSON("/v1/messages/"+id, &m)
	return m
}

// WaitMessage polls message id until it is in state (pending, inflight,
// done or dead). It fails the test at the timeout, or at once when the
// message reaches the other final state (done instead of dead or back).
func (d *Daemon) WaitMessage(id, state string, timeout time.Duration) api.MessageOut {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := d.Message(id)
		if m.State == state {
			return m
		}
		final := m.State == "done" || m.State == "dead"
		if final && (state == "done" || state == "dead") {
			d.t.Fatalf("message %s (chat %s) ended %s, want %s: attempts %d, error %q, reply %q",
				id, m.ChatID, m.State, state, m.Attempts, m.Error, m.Reply)
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("message %s (chat %s) not %s within %s: state %s, attempts %d, error %q",
				id, m.ChatID, state, timeout, m.State, m.Attempts, m.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitFor polls cond every 20ms until it holds; at the timeout it fails
// the test with what.
func (d *Daemon) WaitFor(cond func() bool, timeout time.Duration, what string) {
	d.t.Helper()
	WaitFor(d.t, cond, timeout, what)
}

// WaitFor polls cond every 20ms until it holds; at the timeout it fails
// the test with what.
func WaitFor(t testing.TB, cond func() bool, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --- the CLI ---

// Run runs the dispatch CLI with args and --config; it fails the test if
// the binary cannot be run or takes longer than a minute.
func (d *Daemon) Run(args ...string) (stdout, stderr string, exitCode int) {
	d.t.Helper()
	return run(d.t, d.Cmd(args...))
}

// RunCLI runs the dispatch binary with args and --config cfgPath (none when
// empty), without a daemon of this package.
func RunCLI(t testing.TB, cfgPath string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	bin, _ := Binaries(t)
	if cfgPath != "" {
		args = append(args, "--config", cfgPath)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	return run(t, cmd)
}

func run(t testing.TB, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := exitCode(cmd, err)
		if code < 0 {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
		return out.String(), errb.String(), code
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("run %v: still running after a minute; stdout %q stderr %q", cmd.Args, out.String(), errb.String())
		return "", "", -1
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Poll polls cond every 20ms until it holds (true) or timeout passes
// (false), without failing the test.
func Poll(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
