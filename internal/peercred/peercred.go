// Package peercred tells who is at the other end of a unix socket
// connection: the pid and uid the kernel recorded when the peer connected
// (SO_PEERCRED). A peer cannot forge them.
package peercred

import (
	"errors"
	"net"
)

// Cred is a peer's process and user.
type Cred struct {
	PID, UID int
}

// ErrUnsupported means the platform cannot tell.
var ErrUnsupported = errors.New("peer credentials are not available on this platform")

// Of returns the credentials of c's peer; c must be a unix socket
// connection.
func Of(c net.Conn) (Cred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, errors.New("peercred: not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	return of(raw)
}
