package claude

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts the CLI in a session of its own, which makes it the
// leader of its own process group (so the whole group can be signalled)
// and keeps its processes from joining any other agent's group (setpgid
// works only within one's session); and it has the kernel SIGKILL it if
// the daemon dies, even by kill -9.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExited blocks until pid has exited but leaves it unreaped (WNOWAIT):
// while it is a zombie its pid, which is also the group id, cannot be
// reused, so signalling the group afterwards cannot hit a stranger.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// unreadBytes is how many bytes written to a pipe through f (its write
// end) nobody has read yet (TIOCINQ is FIONREAD; it works on either end): what a dead agent provably never took.
func unreadBytes(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
