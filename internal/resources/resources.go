// Package resources watches what the daemon's host gives it: free disk in
// the state dir, the daemon's open file descriptors, and agent processes that
// no session owns any more (leftover children that once filled the disk of
// the system dispatch is modelled on).
package resources

import (
	"fmt"
	"os"
	"syscall"
)

// Disk is the usage of the filesystem holding a path.
type Disk struct {
	UsedPercent float64
	FreeBytes   uint64
}

// DiskUsage reports the usage of the filesystem holding path, as df does
// (blocks reserved for root count as used).
func DiskUsage(path string) (Disk, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	total := st.Blocks * uint64(st.Bsize)
	avail := st.Bavail * uint64(st.Bsize)
	free := st.Bfree * uint64(st.Bsize)
	used := total - free
	if used+avail == 0 {
		return Disk{FreeBytes: avail}, nil
	}
	return Disk{UsedPercent: 100 * float64(used) / float64(used+avail), FreeBytes: avail}, nil
}

// DiskLevel classifies usage: "ok", "warn" (≥ 90 %) or "critical" (≥ 95 %).
func DiskLevel(usedPercent float64) string {
	switch {
	case usedPercent >= 95:
		return "critical"
	case usedPercent >= 90:
		return "warn"
	}
	return "ok"
}

// OpenFDs counts this process's open file descriptors, and returns the soft
// limit.
func OpenFDs() (open int, limit uint64, err error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0, err
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return len(ents), 0, err
	}
	return len(ents), rl.Cur, nil
}
