package daemon

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// harden makes the daemon's process not dumpable: its /proc entries
// (environ, mem, fd, maps …) then belong to root, so a process of the same
// user — an agent, or anything an agent starts — can neither read its
// environment (which may hold cloud keys the agents are kept from) nor its
// memory, nor attach a debugger to it. The command line stays readable by
// everyone, as it is for every process: it holds no secret (only the
// config file's path).
func harden() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}
