//go:build unix && !linux

package claude

import (
	"os"
	"syscall"
)

// sysProcAttr puts the CLI in a session (and so a process group) of its
// own. There is no parent
// death signal outside Linux.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// waitExited returns at once: without waitid(WNOWAIT) the group is
// signalled right after reaping, a small window for pid reuse.
func waitExited(int) {}

// unreadBytes is unknown here: 0.
func unreadBytes(*os.File) int { return 0 }
