package fakeserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main is the main function of a fake's command: it calls run with the
// command-line arguments and a context cancelled by SIGINT or SIGTERM, and
// on an error prints "name: error" and exits with status 2.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
}

// ServeControl serves a fake's control endpoints h on a listener of their
// own at addr, which must be loopback (they must not be reachable from
// elsewhere), and prints "control: " and their URL, prefix included, to
// out. Calling the returned function stops serving.
func ServeControl(addr string, h http.Handler, prefix string, out io.Writer) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if !isLoopback(host) {
		return nil, errors.New("control address must be loopback: " + addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	cs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go cs.Serve(ln)
	fmt.Fprintln(out, "control: http://"+ln.Addr().String()+prefix)
	return func() { cs.Close() }, nil
}
