// Package fsafe guards the daemon's own files against other local users: the
// state directory and the socket's directory must belong to the daemon's
// user and be writable by nobody else, and the lock, socket and log files
// are never reached through a symbolic link or taken over from another
// owner.
package fsafe

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// CheckDir reports why dir is not safe to keep the daemon's files in, or nil
// when it is: it must be a directory owned by the daemon's effective user,
// not writable by group or others. A symbolic link in its place is accepted
// only when the link itself belongs to the daemon's user or root (another
// user could re-point it); the directory it names is then checked. what
// names the directory in the error ("state directory").
func CheckDir(what, dir string) error {
	li, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if li.Mode()&fs.ModeSymlink != 0 {
		if uid := owner(li); uid != os.Geteuid() && uid != 0 {
			return fmt.Errorf("%s %s: is a symbolic link owned by uid %d, not by the daemon's user (uid %d)", what, dir, uid, os.Geteuid())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s: is not a directory", what, dir)
	}
	if uid := owner(fi); uid != os.Geteuid() {
		return fmt.Errorf("%s %s: owned by uid %d, not by the daemon's user (uid %d); another user could read or replace its files: use a directory of your own", what, dir, uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s %s: mode %04o lets group or others write in it; run chmod go-w %s (0700 is best)", what, dir, perm, dir)
	}
	return nil
}

// EnsureDir creates dir (mode 0700, parents too) when it is missing, then
// applies CheckDir.
func EnsureDir(what, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return CheckDir(what, dir)
}

// CheckFile reports why path may not be used as one of the daemon's own
// files, or nil: a missing file is fine (it will be created); otherwise it
// must be a regular file (not a symbolic link) owned by the daemon's user.
// A file readable or writable by group or others is tightened to 0600,
// which brings files of older versions into line.
func CheckFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: is a symbolic link; refusing to follow it (remove it if you did not make it)", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s: is not a regular file", path)
	case owner(fi) != os.Geteuid():
		return fmt.Errorf("%s: owned by uid %d, not by the daemon's user (uid %d)", path, owner(fi), os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("%s: tighten mode to 0600: %w", path, err)
		}
	}
	return nil
}

// OpenPrivate opens (creating it 0600 when missing) path for reading and
// writing without following a symbolic link, and checks that it is a
// regular file owned by the daemon's user. Nothing is truncated: the
// caller decides once it holds the file.
func OpenPrivate(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s: is a symbolic link; refusing to follow it", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		switch {
		case !fi.Mode().IsRegular():
			err = fmt.Errorf("%s: is not a regular file", path)
		case owner(fi) != os.Geteuid():
			err = fmt.Errorf("%s: owned by uid %d, not by the daemon's user (uid %d)", path, owner(fi), os.Geteuid())
		case fi.Mode().Perm()&0o077 != 0:
			err = f.Chmod(0o600)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// RemoveStaleSocket removes the unix socket at path left by an earlier
// daemon. Nothing there is fine; anything but a socket owned by the
// daemon's user is left alone and reported.
func RemoveStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s: exists and is not a socket (%s); refusing to remove it", path, fi.Mode().Type())
	}
	if uid := owner(fi); uid != os.Geteuid() {
		return fmt.Errorf("%s: is a socket owned by uid %d, not by the daemon's user (uid %d); refusing to replace it", path, uid, os.Geteuid())
	}
	return os.Remove(path)
}

// owner is the uid that owns fi.
func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
