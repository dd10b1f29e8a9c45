// Package netlimit caps how many connections a listener holds open at
// once. Past the cap, Accept waits until a connection closes; the waiting
// clients stay in the kernel's accept queue and cost the process no file
// descriptor, so a flood of idle connections cannot exhaust the daemon's
// descriptors (and with them the store, the logs and the control socket).
package netlimit

import (
	"net"
	"sync"
)

// Listener returns l accepting at most n connections open at a time.
func Listener(l net.Listener, n int) net.Listener {
	return &listener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type listener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &conn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
