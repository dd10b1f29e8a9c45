// Package resources watches what the daemon's host gives it: free disk in
// the state dir, the daemon's open file descriptors, and agent processes that
// no session owns any more (leftover children that once filled the disk of
// the system dispatch is modelled on).
package resources

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// Proc is a process that carries a marker in its environment.
type Proc struct {
	PID, PGID int
	Cmd       string
	// Age is how long the process has been running (0 if unknown).
	Age time.Duration
}

// Marked lists the processes (other than this one) whose environment holds
// the variable key=value — the marker dispatch gives every agent, inherited
// by the agent's children. Processes that vanish while being read are
// skipped.
func Marked(procRoot, key, value string) ([]Proc, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	want := []byte(key + "=" + value)
	self := os.Getpid()
	uptime := readUptime(procRoot)
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "environ"))
		if err != nil || !hasEntry(env, want) {
			continue
		}
		pgid, cmd, started, ok := stat(filepath.Join(procRoot, e.Name(), "stat"))
		if !ok {
			continue
		}
		p := Proc{PID: pid, PGID: pgid, Cmd: cmd}
		if uptime > 0 && started > 0 {
			p.Age = max(0, uptime-started)
		}
		out = append(out, p)
	}
	return out, nil
}

func hasEntry(environ, want []byte) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// userHZ is the unit of /proc/<pid>/stat's start time (USER_HZ, 100 on
// every mainstream Linux).
const userHZ = 100

// stat reads the process group, command name and start time (since boot)
// from /proc/<pid>/stat. A zombie (state Z) is reported as not ok: it is
// already dead.
func stat(path string) (pgid int, cmd string, started time.Duration, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "", 0, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return 0, "", 0, false
	}
	cmd = s[open+1 : close]
	f := strings.Fields(s[close+1:])
	// fields after the name: state(3) ppid pgrp ... starttime(22)
	if len(f) < 3 || f[0] == "Z" {
		return 0, "", 0, false
	}
	if pgid, err = strconv.Atoi(f[2]); err != nil {
		return 0, "", 0, false
	}
	if len(f) > 19 {
		if ticks, err := strconv.ParseInt(f[19], 10, 64); err == nil {
			started = time.Duration(ticks) * time.Second / userHZ
		}
	}
	return pgid, cmd, started, true
}

// readUptime is the time since boot from /proc/uptime (0 if unknown).
func readUptime(procRoot string) time.Duration {
	b, err := os.ReadFile(filepath.Join(procRoot, "uptime"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// Orphans picks, from the marked processes, those whose process group is
// not an owned agent's (owned holds the pids of live agents, which lead
// their own groups) and that have run for at least minAge — an agent that
// is being started right now is not in any session's record yet.
func Orphans(marked []Proc, owned map[int]bool, minAge time.Duration) []Proc {
	var out []Proc
	for _, p := range marked {
		if !owned[p.PGID] && !owned[p.PID] && p.Age >= minAge {
			out = append(out, p)
		}
	}
	return out
}
