package watchdog

import (
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dispatchd/dispatch/internal/clock"
)

// Main is the watchdog process: commands on stdin, warnings on stderr. It
// ignores the signals that end a daemon (the daemon, stopping, releases
// its agents and closes the pipe; it must not lose its watchdog first).
func Main(stdin io.Reader, stderr io.Writer) {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	Run(stdin, Config{
		Clock: clock.Real{},
		Mono:  Monotonic,
		Kill:  func(pgid int) error { return syscall.Kill(-pgid, syscall.SIGKILL) },
		Log:   slog.New(slog.NewTextHandler(stderr, nil)).With("pid", os.Getpid()),
	})
}
