package peercred

import (
	"syscall"

	"golang.org/x/sys/unix"
)

func of(raw syscall.RawConn) (Cred, error) {
	var (
		cred *unix.Ucred
		err  error
	)
	if cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil {
		return Cred{}, cerr
	}
	if err != nil {
		return Cred{}, err
	}
	return Cred{PID: int(cred.Pid), UID: int(cred.Uid)}, nil
}
