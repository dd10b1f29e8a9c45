package sdnotify

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listener is a fake service manager: a unixgram socket in a temp dir.
type listener struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func listen(t *testing.T) *listener {
	t.Helper()
	// A short directory: socket paths are limited to ~108 bytes.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return listenAt(t, filepath.Join(dir, "notify"))
}

func listenAt(t *testing.T, name string) *listener {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &listener{t: t, path: name, conn: conn}
}

// recv returns the next datagram, failing the test after a timeout.
func (l *listener) recv() string {
	l.t.Helper()
	msg, ok := l.tryRecv(5 * time.Second)
	if !ok {
		l.t.Fatal("no datagram received")
	}
	return msg
}

func (l *listener) tryRecv(wait time.Duration) (string, bool) {
	buf := make([]byte, 64<<10)
	_ = l.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := l.conn.Read(buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

// none asserts that nothing is waiting on the socket.
func (l *listener) none() {
	l.t.Helper()
	if msg, ok := l.tryRecv(20 * time.Millisecond); ok {
		l.t.Fatalf("unexpected datagram %q", msg)
	}
}

func TestMessages(t *testing.T) {
	l := listen(t)
	n := Open(Options{Socket: l.path})
	if !n.Enabled() || n.Socket() != l.path {
		t.Fatalf("Enabled=%v Socket=%q", n.Enabled(), n.Socket())
	}
	steps := []struct {
		send func() error
		want string
	}{
		{func() error { return n.Ready("") }, "READY=1"},
		{func() error { return n.Ready("serving on x.sock") }, "READY=1\nSTATUS=serving on x.sock"},
		{func() error { return n.Status("3 sessions\nAPI up") }, "STATUS=3 sessions API up"},
		{func() error { return n.Watchdog() }, "WATCHDOG=1"},
		{func() error { return n.MainPID(4321) }, "MAINPID=4321"},
		{func() error { return n.ExtendTimeout(1500 * time.Millisecond) }, "EXTEND_TIMEOUT_USEC=1500000"},
		{func() error { return n.Stopping("") }, "STOPPING=1"},
		{func() error { return n.Stopping("draining") }, "STOPPING=1\nSTATUS=draining"},
		{func() error { return n.Notify("FOO=1", "BAR=2") }, "FOO=1\nBAR=2"},
	}
	for i, s := range steps {
		if err := s.send(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := l.recv(); got != s.want {
			t.Errorf("step %d: got %q, want %q", i, got, s.want)
		}
	}
	// Nothing to send: nothing sent.
	if err := n.Notify(); err != nil {
		t.Fatal(err)
	}
	if err := n.ExtendTimeout(0); err != nil {
		t.Fatal(err)
	}
	l.none()
}

func TestAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets are Linux-only")
	}
	name := "@dispatch-sdnotify-test-" + strconv.Itoa(os.Getpid())
	l := listenAt(t, name)
	n := Open(Options{Socket: name})
	if err := n.Ready("up"); err != nil {
		t.Fatal(err)
	}
	if got := l.recv(); got != "READY=1\nSTATUS=up" {
		t.Fatalf("got %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv(EnvSocket, "")
	t.Setenv(EnvWatchdogUS, "1000000")
	n := New()
	if n != nil {
		t.Fatalf("New() = %+v, want nil without NOTIFY_SOCKET", n)
	}
	if n.Enabled() || n.Socket() != "" {
		t.Fatal("nil notifier claims to be enabled")
	}
	for _, err := range []error{n.Ready("x"), n.Stopping("x"), n.Status("x"), n.Watchdog(),
		n.MainPID(1), n.ExtendTimeout(time.Second), n.Notify("A=1")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := n.WatchdogInterval(); ok || d != 0 {
		t.Fatalf("WatchdogInterval = %v, %v", d, ok)
	}
	done := make(chan struct{})
	go func() {
		n.RunWatchdog(context.Background(), func() bool { return true })
		n.RunStatus(context.Background(), time.Second, func() string { return "x" })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog/RunStatus on a nil notifier did not return")
	}
	if Open(Options{}) != nil {
		t.Fatal("Open without a socket is not nil")
	}
}

func TestNewReadsAndUnsetsEnvironment(t *testing.T) {
	l := listen(t)
	t.Setenv(EnvSocket, l.path)
	t.Setenv(EnvWatchdogUS, "30000000")
	t.Setenv(EnvWatchdogPID, strconv.Itoa(os.Getpid()))
	n := New()
	if n == nil {
		t.Fatal("New() = nil with NOTIFY_SOCKET set")
	}
	for _, k := range []string{EnvSocket, EnvWatchdogUS, EnvWatchdogPID} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s still set (%q): children would inherit it", k, v)
		}
	}
	if d, ok := n.WatchdogInterval(); !ok || d != 30*time.Second {
		t.Fatalf("WatchdogInterval = %v, %v; want 30s, true", d, ok)
	}
	if err := n.Ready(""); err != nil {
		t.Fatal(err)
	}
	if got := l.recv(); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const self = 4242
	cases := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"60000000", "", time.Minute, true},
		{"60000000", "4242", time.Minute, true},
		{"60000000", "4243", 0, false}, // meant for another process
		{"60000000", "x", 0, false},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"abc", "", 0, false},
		{"99999999999999999999", "", 0, false},
		{"500", "", 500 * time.Microsecond, true},
	}
	for _, c := range cases {
		n := Open(Options{Socket: "/nonexistent/notify", WatchdogUSec: c.usec, WatchdogPID: c.pid, PID: self})
		d, ok := n.WatchdogInterval()
		if d != c.want || ok != c.ok {
			t.Errorf("usec=%q pid=%q: got %v, %v; want %v, %v", c.usec, c.pid, d, ok, c.want, c.ok)
		}
	}
}

func TestSendErrors(t *testing.T) {
	n := Open(Options{Socket: "vsock:2:1234"})
	if err := n.Ready(""); !errors.Is(err, ErrUnsupportedSocket) {
		t.Fatalf("vsock address: err = %v, want ErrUnsupportedSocket", err)
	}
	n = Open(Options{Socket: filepath.Join(t.TempDir(), "missing")})
	if err := n.Ready(""); err == nil {
		t.Fatal("sending to a missing socket succeeded")
	}
}

// waitTimers waits until the fake clock has n pending timers: the loop
// under test has finished its step and is waiting again.
func waitTimers(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clk.Pending() != n {
		if time.Now().After(deadline) {
			t.Fatalf("fake clock: %d timers pending, want %d", clk.Pending(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRunWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	l := listen(t)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	n := Open(Options{Socket: l.path, WatchdogUSec: "20000000", Clock: clk}) // 20s → ping every 10s
	var healthy atomic.Bool
	healthy.Store(true)
	var calls atomic.Int64

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.RunWatchdog(ctx, func() bool { calls.Add(1); return healthy.Load() })
	}()

	// The first ping goes out at once.
	if got := l.recv(); got != "WATCHDOG=1" {
		t.Fatalf("first ping %q", got)
	}
	waitTimers(t, clk, 1)

	// Not due yet: 9.999s later nothing happens.
	clk.Advance(10*time.Second - time.Millisecond)
	l.none()
	clk.Advance(time.Millisecond)
	if got := l.recv(); got != "WATCHDOG=1" {
		t.Fatalf("second ping %q", got)
	}
	waitTimers(t, clk, 1)

	// Wedged: three periods without a ping.
	healthy.Store(false)
	for range 3 {
		before := calls.Load()
		clk.Advance(10 * time.Second)
		waitTimers(t, clk, 1)
		if calls.Load() != before+1 {
			t.Fatalf("healthy() called %d times in one period, want 1", calls.Load()-before)
		}
		l.none()
	}

	// Healthy again: pings resume.
	healthy.Store(true)
	clk.Advance(10 * time.Second)
	if got := l.recv(); got != "WATCHDOG=1" {
		t.Fatalf("ping after recovery %q", got)
	}
	waitTimers(t, clk, 1)

	cancel()
	wg.Wait()
	if clk.Pending() != 0 {
		t.Fatal("RunWatchdog left a timer behind")
	}
	l.none()
}

func TestRunWatchdogDisabledReturns(t *testing.T) {
	l := listen(t)
	for _, o := range []Options{
		{Socket: l.path}, // no WatchdogSec
		{Socket: l.path, WatchdogUSec: "1000000", WatchdogPID: "1"}, // someone else's
	} {
		done := make(chan struct{})
		go func() { Open(o).RunWatchdog(context.Background(), nil); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%+v: RunWatchdog did not return without a watchdog", o)
		}
	}
	l.none()
}

func TestRunWatchdogRealClock(t *testing.T) {
	l := listen(t)
	n := Open(Options{Socket: l.path, WatchdogUSec: "40000"}) // 40ms → every 20ms
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.RunWatchdog(ctx, nil); close(done) }()
	for range 3 {
		if got := l.recv(); got != "WATCHDOG=1" {
			t.Fatalf("got %q", got)
		}
	}
	cancel()
	<-done
}

func TestRunStatusSendsChanges(t *testing.T) {
	l := listen(t)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	n := Open(Options{Socket: l.path, Clock: clk})
	var text atomic.Value
	text.Store("2 sessions, API up")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.RunStatus(ctx, time.Minute, func() string { return text.Load().(string) })
		close(done)
	}()
	if got := l.recv(); got != "STATUS=2 sessions, API up" {
		t.Fatalf("got %q", got)
	}
	waitTimers(t, clk, 1)
	clk.Advance(time.Minute) // unchanged: not sent again
	waitTimers(t, clk, 1)
	l.none()
	text.Store("3 sessions,\nAPI down")
	clk.Advance(time.Minute)
	if got := l.recv(); got != "STATUS=3 sessions, API down" {
		t.Fatalf("got %q", got)
	}
	waitTimers(t, clk, 1)
	cancel()
	<-done
}

func TestConcurrentSendsKeepMessagesWhole(t *testing.T) {
	l := listen(t)
	n := Open(Options{Socket: l.path})
	const senders, each = 8, 20
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := n.Status("sender " + strconv.Itoa(i) + " msg " + strconv.Itoa(j)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := 0
	for got < senders*each {
		msg := l.recv()
		if !strings.HasPrefix(msg, "STATUS=sender ") || strings.Contains(msg, "\n") {
			t.Fatalf("mangled datagram %q", msg)
		}
		got++
	}
	wg.Wait()
}

func TestRunWatchdogLogsTransitions(t *testing.T) {
	l := listen(t)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	n := Open(Options{Socket: l.path, WatchdogUSec: "2000000", Clock: clk})
	var buf safeBuffer
	n.SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	var nilN *Notifier
	nilN.SetLogger(slog.Default()) // no panic

	var healthy atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.RunWatchdog(ctx, healthy.Load); close(done) }()
	waitTimers(t, clk, 1)
	l.none()
	healthy.Store(true)
	clk.Advance(time.Second)
	l.recv()
	waitTimers(t, clk, 1)
	cancel()
	<-done
	out := buf.String()
	if !strings.Contains(out, "withholding systemd watchdog pings") || !strings.Contains(out, "resuming systemd watchdog pings") {
		t.Fatalf("log:\n%s", out)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
