package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is what the figures were measured on.
type Machine struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel,omitempty"`
	CPU        string `json:"cpu,omitempty"`
	MemTotalMB int    `json:"mem_total_mb,omitempty"`
	// FS is the file system of the state directory, where fsync was timed.
	FS    string `json:"fs,omitempty"`
	Fsync Dist   `json:"fsync"`
	// Load is the 1-minute load average when the bench started: other
	// work on the machine competes with the daemon for the same cores.
	Load float64 `json:"load_avg_1m"`
}

// machineFacts describes this machine; the fsync loop runs in dir, which
// should be on the state directory's file system.
func machineFacts(dir string, fsyncs int) (Machine, error) {
	m := Machine{
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Kernel:     strings.TrimSpace(readSmall("/proc/sys/kernel/osrelease")),
		CPU:        cpuModel(),
		MemTotalMB: int(procKB("/proc/meminfo", "MemTotal") / 1024),
		FS:         fsType(dir),
		Load:       loadAvg(),
	}
	d, err := fsyncLatency(dir, fsyncs)
	if err != nil {
		return m, err
	}
	m.Fsync = d
	return m, nil
}

// fsyncLatency times n rounds of "write 4 KiB, fsync" on a scratch file in
// dir: the floor under any durable commit there.
func fsyncLatency(dir string, n int) (Dist, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return Dist{}, fmt.Errorf("fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{'x'}, 4096)
	const warm = 5
	ds := make([]time.Duration, 0, n)
	for i := range n + warm {
		start := time.Now()
		// Rewriting a few blocks keeps the file small while still making
		// every fsync flush a dirty page (as a WAL append does).
		if _, err := f.WriteAt(buf, int64(i%8)*4096); err != nil {
			return Dist{}, fmt.Errorf("fsync probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return Dist{}, fmt.Errorf("fsync probe: %w", err)
		}
		if i >= warm {
			ds = append(ds, time.Since(start))
		}
	}
	return summarize(ds), nil
}

func readSmall(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// procKB reads a "Key:   123 kB" line from a /proc file; 0 if absent.
func procKB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		return n
	}
	return 0
}

// rssKB is a process's resident set size (VmRSS) in KiB; 0 when it cannot
// be read (another machine's daemon, or no /proc).
func rssKB(pid int) int64 {
	return procKB(filepath.Join("/proc", strconv.Itoa(pid), "status"), "VmRSS")
}

// fsType names the file system holding dir, for the common ones.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	switch uint64(st.Type) {
	case 0xef53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683e:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x2fc12fc1:
		return "zfs"
	case 0x6969:
		return "nfs"
	case 0x65735546:
		return "fuse"
	}
	return fmt.Sprintf("0x%x", uint64(st.Type))
}
