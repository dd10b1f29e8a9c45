package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/daemon"
)

// target is the daemon under measurement.
type target struct {
	socket   string
	stateDir string // where fsync is timed
	pid      int    // for VmRSS; 0 if unknown
	mode     string // "child", "in-process" or "socket"
	stop     func() error
}

// benchConfig is the YAML of the bench's own daemon: the echo agent and a
// fresh state dir, everything else at its defaults.
func benchConfig(stateDir, logLevel, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %q\nagent:\n  kind: echo\n", stateDir)
	if logLevel != "" {
		fmt.Fprintf(&b, "log:\n  level: %q\n", logLevel)
	}
	b.WriteString(extra)
	return b.String()
}

// scratchDir makes a fresh, short temporary directory: the control socket
// lives inside it and a unix socket path is limited to about 100 bytes.
func scratchDir() (string, error) {
	base := os.TempDir()
	if len(base) > 40 {
		base = "/tmp"
	}
	return os.MkdirTemp(base, "dsb-")
}

// startChild runs `exe daemon --config …` as a child process and waits until
// its API answers.
func startChild(ctx context.Context, exe, logLevel, extra string, keep bool) (*target, error) {
	dir, err := scratchDir()
	if err != nil {
		return nil, err
	}
	cleanup := func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}
	stateDir := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(stateDir, logLevel, extra)), 0o600); err != nil {
		cleanup()
		return nil, err
	}
	outPath := filepath.Join(dir, "daemon.out")
	out, err := os.Create(outPath)
	if err != nil {
		cleanup()
		return nil, err
	}
	cmd := exec.Command(exe, "daemon", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "DISPATCH_CONFIG="+cfgPath)
	if err := cmd.Start(); err != nil {
		out.Close()
		cleanup()
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()

	t := &target{
		socket:   filepath.Join(stateDir, "dispatch.sock"),
		stateDir: stateDir,
		pid:      cmd.Process.Pid,
		mode:     "child",
	}
	t.stop = func() error {
		defer cleanup()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return exitProblem(err, outPath)
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("daemon did not stop within 60s of SIGTERM; killed")
		}
	}
	if err := waitReady(ctx, t.socket, exited); err != nil {
		_ = cmd.Process.Kill()
		tail := tailOf(outPath, 2000)
		cleanup()
		return nil, fmt.Errorf("%w\ndaemon output:\n%s", err, tail)
	}
	return t, nil
}

func exitProblem(err error, outPath string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("daemon exited with %v\n%s", err, tailOf(outPath, 2000))
}

// startInProcess runs the daemon inside this process (for profiling: one
// CPU profile covers client and daemon).
func startInProcess(ctx context.Context, version, logLevel, extra string, keep bool) (*target, error) {
	dir, err := scratchDir()
	if err != nil {
		return nil, err
	}
	cleanup := func() {
		if !keep {
			_ = os.RemoveAll(dir)
		}
	}
	stateDir := filepath.Join(dir, "state")
	cfg, err := config.Parse([]byte(benchConfig(stateDir, logLevel, extra)))
	if err != nil {
		cleanup()
		return nil, err
	}
	dctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() {
		exited <- daemon.Run(dctx, cfg, daemon.Options{Version: version})
	}()
	t := &target{
		socket:   cfg.SocketPath(),
		stateDir: stateDir,
		pid:      os.Getpid(),
		mode:     "in-process",
	}
	t.stop = func() error {
		defer cleanup()
		cancel()
		select {
		case err := <-exited:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("in-process daemon did not stop within 60s")
		}
	}
	if err := waitReady(ctx, t.socket, exited); err != nil {
		cancel()
		cleanup()
		return nil, err
	}
	return t, nil
}

// useSocket measures a daemon that is already running.
func useSocket(ctx context.Context, socket string) (*target, error) {
	c := newCtl(socket, 1)
	defer c.close()
	st, _, err := c.status(ctx)
	if err != nil {
		return nil, fmt.Errorf("daemon at %s: %w", socket, err)
	}
	return &target{
		socket:   socket,
		stateDir: filepath.Dir(socket),
		pid:      st.Daemon.PID,
		mode:     "socket",
		stop:     func() error { return nil },
	}, nil
}

// waitReady polls /readyz until the daemon answers 200, it exits, or 30 s
// pass.
func waitReady(ctx context.Context, socket string, exited <-chan error) error {
	c := newCtl(socket, 1)
	defer c.close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("daemon exited before it was ready: %v", err)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.ready(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon not ready after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
