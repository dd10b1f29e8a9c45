// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without libsystemd: newline-separated VAR=VALUE
// assignments sent as one datagram to the AF_UNIX socket named by
// $NOTIFY_SOCKET. The name is a file system path, or — when it starts with
// '@' — a Linux abstract socket.
//
// A Notifier is nil when the process does not run under systemd with
// Type=notify (no $NOTIFY_SOCKET); every method is safe on a nil Notifier
// and then does nothing, so callers never need to check.
//
// The watchdog (WatchdogSec= in the unit) is served by RunWatchdog, which
// pings only while a health function says the daemon is healthy: a daemon
// whose loops have wedged stops pinging, and systemd restarts it.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

// The environment variables of the protocol.
const (
	EnvSocket      = "NOTIFY_SOCKET"
	EnvWatchdogUS  = "WATCHDOG_USEC"
	EnvWatchdogPID = "WATCHDOG_PID"
)

// ErrUnsupportedSocket is returned by every send when $NOTIFY_SOCKET names
// neither a path nor an abstract socket (e.g. systemd's "vsock:" form).
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// Options configure Open. The zero value of every field but Socket has a
// sensible default.
type Options struct {
	// Socket is the value of $NOTIFY_SOCKET; empty means "not under
	// systemd" and Open returns nil.
	Socket string
	// WatchdogUSec and WatchdogPID are the values of $WATCHDOG_USEC and
	// $WATCHDOG_PID (either may be empty).
	WatchdogUSec string
	WatchdogPID  string
	// PID is this process's pid (default os.Getpid()); the watchdog is
	// enabled only when WatchdogPID is empty or equal to it.
	PID int
	// Clock drives RunWatchdog and RunStatus (default: the wall clock).
	Clock clock.Clock
	// Log receives RunWatchdog's transitions (default: discarded).
	Log *slog.Logger
}

// Notifier sends notifications to the service manager. The zero value is
// not usable; get one from New or Open. A nil *Notifier is a valid no-op.
type Notifier struct {
	addr     string        // socket name as given ('@' = abstract)
	addrErr  error         // non-nil when the address is unusable
	watchdog time.Duration // 0 = watchdog not enabled for us
	clock    clock.Clock
	log      *slog.Logger

	mu sync.Mutex // serialises sends so messages keep their order
}

// New reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, then removes
// all three from the environment (as sd_notify's unset_environment does), so
// that child processes — the agents — neither inherit the socket nor believe
// they are the watched service. It returns nil when $NOTIFY_SOCKET is unset
// or empty. Call it once, early, before starting any child process.
func New() *Notifier {
	o := Options{
		Socket:       os.Getenv(EnvSocket),
		WatchdogUSec: os.Getenv(EnvWatchdogUS),
		WatchdogPID:  os.Getenv(EnvWatchdogPID),
	}
	for _, k := range []string{EnvSocket, EnvWatchdogUS, EnvWatchdogPID} {
		_ = os.Unsetenv(k)
	}
	return Open(o)
}

// Open returns a Notifier for o without touching the environment, or nil
// when o.Socket is empty.
func Open(o Options) *Notifier {
	if o.Socket == "" {
		return nil
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{addr: o.Socket, clock: o.Clock, log: o.Log}
	if o.Socket[0] != '/' && o.Socket[0] != '@' {
		n.addrErr = fmt.Errorf("%w %q", ErrUnsupportedSocket, o.Socket)
	}
	n.watchdog = watchdogInterval(o.WatchdogUSec, o.WatchdogPID, o.PID)
	return n
}

// watchdogInterval applies sd_watchdog_enabled(3): WATCHDOG_USEC must be a
// positive integer, and WATCHDOG_PID, when set, must be our pid.
func watchdogInterval(usec, pid string, self int) time.Duration {
	if usec == "" {
		return 0
	}
	us, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || us == 0 || us > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return 0
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != self {
			return 0
		}
	}
	return time.Duration(us) * time.Microsecond
}

// SetLogger sets where RunWatchdog logs its transitions (unhealthy, healthy
// again, a failing send). Call it before RunWatchdog starts.
func (n *Notifier) SetLogger(l *slog.Logger) {
	if n != nil && l != nil {
		n.log = l
	}
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil }

// Socket is the $NOTIFY_SOCKET the notifier sends to ("" when nil).
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Notify sends the given VAR=VALUE assignments as one datagram. Values must
// not contain newlines (use Status for free text, which replaces them).
func (n *Notifier) Notify(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	if n.addrErr != nil {
		return n.addrErr
	}
	msg := strings.Join(assignments, "\n")
	n.mu.Lock()
	defer n.mu.Unlock()
	// One unbound datagram socket per message, as sd_notify does: nothing
	// to keep open, and nothing to break if the manager re-creates its
	// socket. Go maps a leading '@' to the abstract namespace (Linux).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Ready tells the manager that start-up is complete (READY=1), with an
// optional status line.
func (n *Notifier) Ready(status string) error {
	if status == "" {
		return n.Notify("READY=1")
	}
	return n.Notify("READY=1", "STATUS="+oneLine(status))
}

// Stopping tells the manager that the service is shutting down
// (STOPPING=1), with an optional status line.
func (n *Notifier) Stopping(status string) error {
	if status == "" {
		return n.Notify("STOPPING=1")
	}
	return n.Notify("STOPPING=1", "STATUS="+oneLine(status))
}

// Status sets the free-text status shown by `systemctl status`.
func (n *Notifier) Status(status string) error {
	return n.Notify("STATUS=" + oneLine(status))
}

// MainPID tells the manager which process is the service's main process.
func (n *Notifier) MainPID(pid int) error {
	return n.Notify("MAINPID=" + strconv.Itoa(pid))
}

// ExtendTimeout asks for d more time to finish the current start-up or
// shutdown step (EXTEND_TIMEOUT_USEC), beyond TimeoutStartSec/StopSec.
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return n.Notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// Watchdog sends one keep-alive ping (WATCHDOG=1).
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// WatchdogInterval is the watchdog timeout systemd enforces on this process
// (WatchdogSec=), and whether the watchdog is enabled for us at all.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n == nil || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog, true
}

// RunWatchdog pings the watchdog every interval/2 for as long as ctx lives —
// but only while healthy() returns true (nil healthy means always). The
// first ping (if healthy) goes out at once. When the watchdog is not enabled
// it returns at once; otherwise it returns when ctx is done. Run it in its
// own goroutine, and cancel it when shutdown begins (after Stopping).
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) {
	interval, ok := n.WatchdogInterval()
	if !ok {
		return
	}
	period := max(interval/2, time.Millisecond)
	wasHealthy, sendFailed := true, false
	for {
		ok := healthy == nil || healthy()
		switch {
		case ok:
			if !wasHealthy {
				n.log.Info("daemon healthy again: resuming systemd watchdog pings")
			}
			if err := n.Watchdog(); err != nil {
				if !sendFailed {
					n.log.Warn("systemd watchdog ping failed", "err", err)
				}
				sendFailed = true
			} else {
				sendFailed = false
			}
		case wasHealthy:
			n.log.Error("daemon unhealthy: withholding systemd watchdog pings; systemd restarts the service if this lasts",
				"watchdog", interval)
		}
		wasHealthy = ok

		t := n.clock.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// RunStatus sends STATUS=status() every interval while ctx lives, skipping
// unchanged texts. It returns at once on a nil Notifier.
func (n *Notifier) RunStatus(ctx context.Context, interval time.Duration, status func() string) {
	if n == nil || status == nil || interval <= 0 {
		return
	}
	last := ""
	for {
		if s := oneLine(status()); s != "" && s != last {
			if n.Status(s) == nil {
				last = s
			}
		}
		t := n.clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// oneLine makes s safe as one assignment value: the protocol separates
// assignments with newlines.
func oneLine(s string) string { return newlines.Replace(s) }

var newlines = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")
