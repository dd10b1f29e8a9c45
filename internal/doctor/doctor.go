// Package doctor checks a dispatch installation and tells the operator what
// to fix: the config loads, the agent's executable runs, the AI API answers,
// the state dir, disk, store and log dir are usable, and the daemon (when
// one runs) is healthy. Each check is a small function of the config and an
// Env whose fields replace the outside world in tests.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/sandbox"
)

// Status is a check's outcome.
type Status int

const (
	// Pass: nothing to do.
	Pass Status = iota
	// Warn: works, but deserves attention; does not fail the run.
	Warn
	// Fail: dispatch will not work (well) until this is fixed.
	Fail
	// Info: neither good nor bad (e.g. the daemon is not running).
	Info
)

// Mark is the symbol printed for s.
func (s Status) Mark() string {
	switch s {
	case Pass:
		return "✔"
	case Warn:
		return "!"
	case Fail:
		return "✘"
	}
	return "-"
}

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return "info"
}

// Result is one check's verdict. Hint says what to do; it is printed for
// Fail, Warn and Info results.
type Result struct {
	Name   string
	Status Status
	Detail string
	Hint   string
}

// Check is one named check.
type Check struct {
	Name string
	Run  func(ctx context.Context) Result
}

// Disk is the usage of a file system, in bytes.
type Disk struct {
	Total uint64 // size
	Free  uint64 // free, including blocks reserved for root
	Avail uint64 // free for an unprivileged user
}

// Env is the outside world the checks see. A zero field means the real
// thing (see the defaults in withDefaults).
type Env struct {
	// LookPath finds an executable (exec.LookPath).
	LookPath func(file string) (string, error)
	// Getenv reads the doctor's own environment (os.Getenv).
	Getenv func(key string) string
	// Environ is the doctor's environment, the base of the agent's
	// (os.Environ).
	Environ func() []string
	// RunVersion runs `path --version` with the given environment and
	// returns its output.
	RunVersion func(ctx context.Context, path string, env []string) (string, error)
	// HTTP is the client for the API reachability check; it must not
	// follow redirects.
	HTTP *http.Client
	// DiskUsage reports the file system holding path (statfs).
	DiskUsage func(path string) (Disk, error)
	// ProcessAlive reports whether pid exists (kill(pid, 0)).
	ProcessAlive func(pid int) bool
	// MemTotal is the machine's memory in bytes (/proc/meminfo).
	MemTotal func() uint64
	// AgentRSS is the per-agent memory a running daemon measured: its
	// largest live agent, how many live agents it measured, and whether
	// it measured any (GET /v1/status over the control socket).
	AgentRSS func(ctx context.Context, cfg config.Config) (per uint64, live int, ok bool)

	VersionTimeout time.Duration // agent --version (default 10s)
	HTTPTimeout    time.Duration // API reachability (default 5s)
	SocketTimeout  time.Duration // control socket requests (default 5s)
	StoreTimeout   time.Duration // quick_check (default 1m)

	// SandboxProbe reports why agents cannot be sandboxed here, or nil
	// (sandbox.Probe with bwrap).
	SandboxProbe func(ctx context.Context) error

	// RequireDaemon makes "daemon not running" a failure instead of a
	// neutral line.
	RequireDaemon bool
}

func (e Env) withDefaults() Env {
	if e.LookPath == nil {
		e.LookPath = exec.LookPath
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Environ == nil {
		e.Environ = os.Environ
	}
	if e.RunVersion == nil {
		e.RunVersion = runVersion
	}
	if e.VersionTimeout <= 0 {
		e.VersionTimeout = 10 * time.Second
	}
	if e.HTTPTimeout <= 0 {
		e.HTTPTimeout = 5 * time.Second
	}
	if e.SocketTimeout <= 0 {
		e.SocketTimeout = 5 * time.Second
	}
	if e.StoreTimeout <= 0 {
		e.StoreTimeout = time.Minute
	}
	if e.HTTP == nil {
		e.HTTP = &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSHandshakeTimeout: e.HTTPTimeout,
				DisableKeepAlives:   true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if e.DiskUsage == nil {
		e.DiskUsage = statfs
	}
	if e.ProcessAlive == nil {
		e.ProcessAlive = processAlive
	}
	if e.SandboxProbe == nil {
		e.SandboxProbe = func(ctx context.Context) error { return sandbox.Probe(ctx, sandbox.DefaultBwrap) }
	}
	return e
}

// Report is the outcome of a whole run.
type Report struct {
	Results []Result
	Failed  int
	Warned  int
}

// OK reports whether no check failed.
func (r Report) OK() bool { return r.Failed == 0 }

// Checks returns the checks that follow a successful config load, in the
// order they are run.
func Checks(cfg config.Config, env Env) []Check {
	env = env.withDefaults()
	return []Check{
		{"agent", func(ctx context.Context) Result { return CheckAgent(ctx, cfg, env) }},
		{"AI API", func(ctx context.Context) Result { return CheckAPI(ctx, cfg, env) }},
		{"state dir", func(ctx context.Context) Result { return CheckStateDir(cfg) }},
		{"disk space", func(ctx context.Context) Result { return CheckDisk(cfg, env) }},
		{"store", func(ctx context.Context) Result { return CheckStore(ctx, cfg, env) }},
		{"daemon", func(ctx context.Context) Result { return CheckDaemon(ctx, cfg, env) }},
		{"memory", func(ctx context.Context) Result { return CheckMemory(ctx, cfg, env) }},
		{"log dir", func(ctx context.Context) Result { return CheckLogDir(cfg) }},
		{"API tokens", func(ctx context.Context) Result { return CheckTokens(cfg) }},
		{"sandbox", func(ctx context.Context) Result { return CheckSandbox(ctx, cfg, env) }},
	}
}

// Run loads the config at configPath with load (config.Load when nil),
// runs every check and prints one line per check to w — the mark, the
// name and what was found — followed, for anything but a pass, by an
// indented hint line. When the config does not load, the other checks are
// skipped (they all depend on it).
func Run(ctx context.Context, w io.Writer, configPath string, load func(string) (config.Config, error), env Env) Report {
	if load == nil {
		load = config.Load
	}
	var rep Report
	cfg, res := CheckConfig(configPath, load)
	rep.add(w, res)
	if res.Status == Fail {
		fmt.Fprintln(w, "  (the other checks need a config that loads: skipped)")
		return rep
	}
	for _, c := range Checks(cfg, env) {
		r := runOne(ctx, c)
		rep.add(w, r)
	}
	return rep
}

// runOne runs c, turning a panic into a failed result: one broken check
// must not hide the others.
func runOne(ctx context.Context, c Check) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Status: Fail, Detail: fmt.Sprintf("check crashed: %v", p)}
		}
		if r.Name == "" {
			r.Name = c.Name
		}
	}()
	return c.Run(ctx)
}

// nameWidth aligns the details in a column.
const nameWidth = 11

func (rep *Report) add(w io.Writer, r Result) {
	rep.Results = append(rep.Results, r)
	switch r.Status {
	case Fail:
		rep.Failed++
	case Warn:
		rep.Warned++
	}
	fmt.Fprintln(w, Format(r))
}

// Format renders a result as printed: "✔ name       detail", plus
// "\n    hint: …" for a non-passing result with a hint.
func Format(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-*s %s", r.Status.Mark(), nameWidth, r.Name, r.Detail)
	if r.Status != Pass && r.Hint != "" {
		b.WriteString("\n    hint: ")
		b.WriteString(r.Hint)
	}
	return strings.TrimRight(b.String(), " ")
}

// ---- default Env implementations -----------------------------------------

func statfs(path string) (Disk, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Disk{}, err
	}
	bs := uint64(st.Bsize)
	return Disk{Total: st.Blocks * bs, Free: st.Bfree * bs, Avail: st.Bavail * bs}, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// runVersion runs `path --version` in its own process group, so that a
// timeout kills anything it started too.
func runVersion(ctx context.Context, path string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out := &capped{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), ctx.Err()
	}
	return out.String(), err
}

// capped is a buffer that keeps the first max bytes written to it.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) String() string { return string(c.b) }
