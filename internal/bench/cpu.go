package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is the kernel's USER_HZ, the unit of /proc CPU times; it is 100 on
// every Linux architecture Go supports.
const clkTck = 100

// cpuSample is a reading of the CPU time used so far.
type cpuSample struct {
	at       time.Time
	daemon   time.Duration // the daemon process (0 if unreadable)
	self     time.Duration // this process
	busy     uint64        // machine-wide busy ticks
	total    uint64        // machine-wide ticks
	daemonOK bool
}

func sampleCPU(pid int) cpuSample {
	s := cpuSample{at: time.Now()}
	s.daemon, s.daemonOK = procCPU(pid)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.busy, s.total = machineTicks()
	return s
}

// CPUUse is the CPU spent during a phase, in cores (CPU seconds per second).
type CPUUse struct {
	Wall time.Duration `json:"wall_ns"`
	// Daemon is the daemon process; in process it includes the client.
	Daemon float64 `json:"daemon_cores"`
	// Client is the bench's own process (0 when the daemon runs in it).
	Client float64 `json:"client_cores"`
	// Machine is every core's busy time, Others what neither the daemon
	// nor the bench used: other load that competed for the cores.
	Machine float64 `json:"machine_cores"`
	Others  float64 `json:"other_cores"`
	// DaemonPerMsg is the daemon's CPU time per message of the phase.
	DaemonPerMsg time.Duration `json:"daemon_per_msg_ns,omitempty"`
	ClientPerMsg time.Duration `json:"client_per_msg_ns,omitempty"`
	OK           bool          `json:"ok"`
}

// cpuUse is the CPU used between a and b, for msgs messages.
func cpuUse(a, b cpuSample, inProcess bool, msgs int) CPUUse {
	wall := b.at.Sub(a.at)
	u := CPUUse{Wall: wall, OK: a.daemonOK && b.daemonOK && wall > 0}
	if !u.OK {
		return u
	}
	cores := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
	daemon := b.daemon - a.daemon
	client := b.self - a.self
	if inProcess {
		client = 0
	}
	u.Daemon, u.Client = cores(daemon), cores(client)
	if dt := b.total - a.total; dt > 0 && b.total > a.total {
		busyFrac := float64(b.busy-a.busy) / float64(dt)
		u.Machine = busyFrac * float64(numCPU())
		u.Others = max(u.Machine-u.Daemon-u.Client, 0)
	}
	if msgs > 0 {
		u.DaemonPerMsg = daemon / time.Duration(msgs)
		u.ClientPerMsg = client / time.Duration(msgs)
	}
	return u
}

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may contain spaces; fields count from the
	// closing parenthesis. utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clkTck, true
}

// machineTicks reads the aggregate "cpu" line of /proc/stat: busy and total
// ticks (idle and iowait are not busy; steal is).
func machineTicks() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// numCPU counts the CPUs /proc/stat reports (its "cpu" line sums them all).
func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	f := strings.Fields(readSmall("/proc/loadavg"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
