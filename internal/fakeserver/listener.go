// Package fakeserver holds what the fakes of outside systems (fakeapi,
// faketelegram, fakeslack) share: a loopback listener that keeps its port
// for its life, so a fake can stop listening (connections refused) and
// listen again on the same port.
package fakeserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// CheckLoopback returns an error unless addr is a host:port whose host is
// a loopback address or "localhost".
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if !isLoopback(host) {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// Listener serves an http.Handler on a loopback port chosen by Start and
// kept until the end: Stop closes the listener and every open connection,
// Resume listens on the same port again. It has no lock of its own; the
// caller serialises every call.
type Listener struct {
	handler http.Handler
	addr    string       // host:port, fixed by Start
	hs      *http.Server // nil while not listening
	done    chan struct{}
}

// Start checks that addr is loopback, listens on it and serves h in the
// background. It fails if the listener was started before.
func (l *Listener) Start(addr string, h http.Handler) error {
	if err := CheckLoopback(addr); err != nil {
		return err
	}
	if l.Started() {
		return errors.New("already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.handler = h
	l.addr = ln.Addr().String()
	l.serve(ln)
	return nil
}

// Started reports whether Start succeeded.
func (l *Listener) Started() bool { return l.addr != "" }

// Listening reports whether the listener is open.
func (l *Listener) Listening() bool { return l.hs != nil }

// URL returns "http://" and the address listened on, or "" before Start.
func (l *Listener) URL() string {
	if l.addr == "" {
		return ""
	}
	return "http://" + l.addr
}

// Stop closes the listener and every open connection, kept-alive ones
// included (they would bypass the refusal), and waits for the server to
// stop. It does nothing if the listener is not open.
func (l *Listener) Stop() error {
	if l.hs == nil {
		return nil
	}
	err := l.hs.Close()
	<-l.done
	l.hs = nil
	return err
}

// Resume listens on the port of Start again, retrying briefly: the port
// was ours a moment ago, but the kernel may need a little while to let go
// of it. It does nothing if the listener is open or was never started.
func (l *Listener) Resume() error {
	if l.hs != nil || !l.Started() {
		return nil
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", l.addr); err == nil {
			l.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("listen again on %s: %w", l.addr, err)
}

func (l *Listener) serve(ln net.Listener) {
	hs := &http.Server{Handler: l.handler, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	l.hs, l.done = hs, done
}
