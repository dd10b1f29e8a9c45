package watchdog

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

// Client is the daemon's end of a watchdog process.
type Client struct {
	clk  clock.Clock
	mono func() time.Duration
	log  *slog.Logger
	cmd  *exec.Cmd

	mu     sync.Mutex
	w      *os.File
	broken bool
}

// Start starts the watchdog process argv (the dispatch binary and Command)
// in a process group of its own, so that a signal to the daemon's group
// does not reach it. Until the first Renew it kills nothing.
func Start(argv []string, clk clock.Clock, log *slog.Logger) (*Client, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("watchdog: start %s: %w", argv[0], err)
	}
	r.Close()
	return &Client{clk: clk, mono: Monotonic, log: log, cmd: cmd, w: w}, nil
}

// Pid is the watchdog process's pid.
func (c *Client) Pid() int { return c.cmd.Process.Pid }

func (c *Client) send(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil || c.broken {
		return
	}
	if _, err := fmt.Fprintf(c.w, format+"\n", args...); err != nil {
		c.broken = true
		c.log.Error("watchdog: it no longer listens: agents of a node that loses its leases are stopped only by the daemon", "err", err)
	}
}

// Watch has the agent process group pgid watched; release ends that (call
// it before the agent is reaped, while its pid cannot be reused).
func (c *Client) Watch(pgid int) (release func()) {
	c.send("w %d", pgid)
	var once sync.Once
	return func() { once.Do(func() { c.send("u %d", pgid) }) }
}

// Renew tells the watchdog that the leases hold until until (on the
// client's clock): past it, it kills every watched group.
func (c *Client) Renew(until time.Time) {
	// The monotonic reading first: a pause between the two readings
	// moves the deadline earlier, never later.
	mono := c.mono()
	left := until.Sub(c.clk.Now())
	c.send("d %d", int64(mono+left))
}

// Close closes the pipe (the watchdog kills what is still watched, nothing
// once every agent was released) and waits for the process to end.
func (c *Client) Close() error {
	c.mu.Lock()
	w := c.w
	c.w = nil
	c.mu.Unlock()
	if w == nil {
		return nil
	}
	w.Close()
	return c.cmd.Wait()
}
