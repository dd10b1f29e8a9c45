package resources

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is one process as read from /proc.
type Proc struct {
	PID, PPID, PGID int
	// SID is the session id (the pid of the session's leader).
	SID int
	// UID is the real uid, EUID the effective one.
	UID, EUID int
	Cmd       string
	// Start is the start time in clock ticks since boot: with the pid it
	// names one process, even after the pid is reused.
	Start uint64
	// Age is how long the process has been running (0 if unknown).
	Age time.Duration
}

// Table is one reading of the process table.
type Table struct {
	// Procs are all live processes by pid (zombies left out).
	Procs map[int]Proc
	// Marked are the processes of user uid, other than this one, whose
	// environment holds the marker entry.
	Marked []Proc
}

// ReadTable reads procRoot ("" = /proc): every live process, and those of
// user uid whose environment holds key=value — the marker dispatch gives
// every agent, inherited by the agent's children. Processes that vanish
// while being read are skipped. Another user's process is never marked,
// whatever its environment says.
func ReadTable(procRoot, key, value string, uid int) (Table, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return Table{}, err
	}
	want := []byte(key + "=" + value)
	self := os.Getpid()
	uptime := readUptime(procRoot)
	t := Table{Procs: map[int]Proc{}}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProc(procRoot, pid, uptime)
		if !ok {
			continue
		}
		t.Procs[pid] = p
		if pid == self || p.UID != uid || p.EUID != uid {
			continue
		}
		env, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "environ"))
		if err != nil || !hasEntry(env, want) {
			continue
		}
		t.Marked = append(t.Marked, p)
	}
	return t, nil
}

// readProc reads one process's stat and uids; ok is false for a zombie or
// a process that is gone.
func readProc(procRoot string, pid int, uptime time.Duration) (Proc, bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	p, ok := parseStat(filepath.Join(dir, "stat"))
	if !ok {
		return Proc{}, false
	}
	p.PID = pid
	if p.UID, p.EUID, ok = readUIDs(filepath.Join(dir, "status")); !ok {
		return Proc{}, false
	}
	if uptime > 0 && p.Start > 0 {
		p.Age = max(0, uptime-time.Duration(p.Start)*time.Second/userHZ)
	}
	return p, true
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

// parseStat reads the parent, process group, command name and start time
// from /proc/<pid>/stat. A zombie (state Z) is reported as not ok: it is
// already dead.
func parseStat(path string) (p Proc, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Proc{}, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return Proc{}, false
	}
	p.Cmd = s[open+1 : close]
	f := strings.Fields(s[close+1:])
	// fields after the name: state(3) ppid(4) pgrp(5) session(6) ... starttime(22)
	if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
		return Proc{}, false
	}
	var err1, err2 error
	p.PPID, err1 = strconv.Atoi(f[1])
	p.PGID, err2 = strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return Proc{}, false
	}
	if len(f) > 3 {
		p.SID, _ = strconv.Atoi(f[3])
	}
	if len(f) > 19 {
		p.Start, _ = strconv.ParseUint(f[19], 10, 64)
	}
	return p, true
}

// readUIDs reads the real and effective uid from /proc/<pid>/status.
func readUIDs(path string) (uid, euid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		rest, found := strings.CutPrefix(l, "Uid:")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return 0, 0, false
		}
		u, err1 := strconv.Atoi(f[0])
		e, err2 := strconv.Atoi(f[1])
		return u, e, err1 == nil && err2 == nil
	}
	return 0, 0, false
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

// Orphans picks, from the marked processes, those that no live agent
// owns: owned holds the pids of live agents (which lead their own
// process groups). A process is owned when it is in an owned group or
// descends from an owned agent — a tool the agent started that moved to a
// session of its own is still the agent's. A process younger than minAge
// is left alone: an agent being started is in no session's record yet.
func Orphans(t Table, owned map[int]bool, minAge time.Duration) []Proc {
	var out []Proc
	for _, p := range t.Marked {
		if p.Age < minAge || owned[p.PGID] || descends(t.Procs, p.PID, owned) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// descends reports whether pid or one of its ancestors is in owned.
func descends(procs map[int]Proc, pid int, owned map[int]bool) bool {
	for range 4096 { // a cycle cannot happen, but a bound costs nothing
		if owned[pid] {
			return true
		}
		p, ok := procs[pid]
		if !ok || p.PPID <= 1 || p.PPID == pid {
			return false
		}
		pid = p.PPID
	}
	return false
}

// ErrChanged means the process is not the one that was read: it has ended,
// and its pid may belong to another process now.
var ErrChanged = errors.New("process changed since it was read")

// Kill sends SIGKILL to p, if p is still the process that was read: same
// start time, same user. With a pidfd (Linux 5.3+) the check and the
// signal are about one process whatever happens to the pid in between;
// elsewhere a plain kill follows the check.
func Kill(procRoot string, p Proc) error {
	if procRoot == "" {
		procRoot = "/proc"
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err == nil {
		defer unix.Close(fd)
	} else if !errors.Is(err, unix.ENOSYS) {
		if errors.Is(err, unix.ESRCH) {
			return ErrChanged
		}
		return fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	now, ok := readProc(procRoot, p.PID, 0)
	if !ok || now.Start != p.Start || now.UID != p.UID || now.EUID != p.EUID {
		return ErrChanged
	}
	if fd >= 0 && err == nil {
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
			return fmt.Errorf("kill %d: %w", p.PID, err)
		}
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %d: %w", p.PID, err)
	}
	return nil
}

// AgentOf tells whether process pid belongs to one of the live agents,
// and to which chat. agents maps each live agent's pid to its chat; parent
// is the pid of the process that started them (the daemon), so that a pid
// of the map that has since been reused by a stranger is not mistaken for
// the agent.
//
// The chat comes from ancestry alone: pid belongs to an agent's chat when
// the agent is pid itself or one of its ancestors, each ancestor having
// started no later than its child (a parent that exited and whose pid was
// reused is younger than its former child, which ends the walk). Process
// group and session ids are never used to grant a chat: a process can
// choose its group. They can only make a process an agent's: one with no
// agent among its ancestors that is still in an agent's group or session,
// or that carries the marker key=value, is an agent's of no known chat. A
// process that is gone cannot be told apart from an agent's and is
// reported as one, of no known chat.
func AgentOf(procRoot string, pid, parent int, agents map[int]string, key, value string) (chat string, isAgent bool) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if pid <= 0 {
		return "", true
	}
	first, ok := readProc(procRoot, pid, 0)
	if !ok {
		return "", true // gone before it could be read
	}
	cur := first
	for range 4096 { // a cycle cannot happen, but a bound costs nothing
		if c, ok := agents[cur.PID]; ok && cur.PPID == parent {
			return c, true
		}
		if cur.PPID <= 1 || cur.PPID == parent || cur.PPID == cur.PID {
			break
		}
		up, ok := readProc(procRoot, cur.PPID, 0)
		if !ok || (up.Start > cur.Start && cur.Start > 0) {
			break // the parent is gone, its pid perhaps reused
		}
		cur = up
	}
	if _, ok := agents[first.PGID]; ok {
		return "", true
	}
	if _, ok := agents[first.SID]; ok {
		return "", true
	}
	if value != "" {
		env, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "environ"))
		if err == nil && hasEntry(env, []byte(key+"="+value)) {
			return "", true
		}
	}
	return "", false
}
