//go:build !linux

package peercred

import "syscall"

func of(syscall.RawConn) (Cred, error) { return Cred{}, ErrUnsupported }
