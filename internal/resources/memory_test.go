package resources

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// stat24 is a /proc/<pid>/stat line with group pgid and rss pages.
func stat24(pid int, comm, state string, pgid int, rss int) string {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice threads itreal starttime
	// vsize rss ...
	return fmt.Sprintf("%d (%s) %s 1 %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 1000 %d 1844 0 0",
		pid, comm, state, pgid, pgid, rss)
}

func TestGroupRSS(t *testing.T) {
	root := t.TempDir()
	page := uint64(os.Getpagesize())
	write := func(pid int, line string) {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(100, stat24(100, "claude", "S", 100, 1000))     // agent
	write(101, stat24(101, "node (x) y", "R", 100, 500))  // its child, odd name
	write(102, stat24(102, "dead", "Z", 100, 9999))       // zombie: no memory
	write(200, stat24(200, "claude", "S", 200, 10))       // another agent
	write(300, stat24(300, "unrelated", "S", 300, 77777)) // not asked for
	write(400, "400 (short) S 1 400")                     // unreadable line
	os.MkdirAll(filepath.Join(root, "self"), 0o755)

	got, err := GroupRSS(root, map[int]bool{100: true, 200: true, 999: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]uint64{100: 1500 * page, 200: 10 * page}
	if len(got) != len(want) || got[100] != want[100] || got[200] != want[200] {
		t.Fatalf("GroupRSS = %v, want %v", got, want)
	}
	if got, err := GroupRSS(root, nil); err != nil || len(got) != 0 {
		t.Fatalf("GroupRSS(nil) = %v, %v", got, err)
	}
}

// TestGroupRSSReal measures a real process group: a shell that starts a
// child in its group holds memory, and the sum covers both.
func TestGroupRSSReal(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	pg := cmd.Process.Pid
	var got map[int]uint64
	for range 100 {
		var err error
		if got, err = GroupRSS("", map[int]bool{pg: true}); err != nil {
			t.Fatal(err)
		}
		if got[pg] > 0 {
			break
		}
	}
	if got[pg] < 100<<10 {
		t.Fatalf("GroupRSS of a live shell group = %d bytes, want at least 100 KiB", got[pg])
	}
}

func TestMemTotal(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "meminfo"), []byte("MemTotal:        8046516 kB\nMemFree: 1 kB\n"), 0o644)
	if got := MemTotal(root); got != 8046516*1024 {
		t.Fatalf("MemTotal = %d", got)
	}
	if MemTotal(t.TempDir()) != 0 {
		t.Fatal("MemTotal without meminfo != 0")
	}
	if MemTotal("") == 0 {
		t.Fatal("MemTotal of this machine = 0")
	}
}
