package resources

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/otheruser"
)

func TestDiskLevel(t *testing.T) {
	for _, tt := range []struct {
		used float64
		want string
	}{{0, "ok"}, {89.9, "ok"}, {90, "warn"}, {94.9, "warn"}, {95, "critical"}, {100, "critical"}} {
		if got := DiskLevel(tt.used); got != tt.want {
			t.Errorf("DiskLevel(%v) = %s, want %s", tt.used, got, tt.want)
		}
	}
}

func TestDiskUsageAndFDs(t *testing.T) {
	d, err := DiskUsage(t.TempDir())
	if err != nil || d.UsedPercent < 0 || d.UsedPercent > 100 {
		t.Fatalf("DiskUsage = %+v, %v", d, err)
	}
	open, limit, err := OpenFDs()
	if err != nil || open < 3 || limit == 0 {
		t.Fatalf("OpenFDs = %d, %d, %v", open, limit, err)
	}
}

func writeProc(t *testing.T, root string, pid, stat, environ string, uid int) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	os.WriteFile(filepath.Join(dir, "environ"), []byte(environ), 0o644)
	os.WriteFile(filepath.Join(dir, "status"), []byte(fmt.Sprintf("Name:\tx\nUid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)), 0o644)
}

func TestReadTableAndOrphans(t *testing.T) {
	root := t.TempDir()
	const me, other = 1000, 1001
	mark := "DISPATCH_AGENT_MARK=m1\x00"
	writeProc(t, root, "100", "100 (claude) S 1 100 100 0", "A=1\x00"+mark, me)                 // agent, leads its group
	writeProc(t, root, "101", "101 (sleep (x)) S 100 100 100 0", mark+"B=2\x00", me)            // its child
	writeProc(t, root, "102", "102 (daemonized) S 101 102 102 0", mark, me)                     // a grandchild in a session of its own
	writeProc(t, root, "200", "200 (claude) S 1 200 200 0", mark, me)                           // orphaned agent
	writeProc(t, root, "300", "300 (other) S 1 300 300 0", "DISPATCH_AGENT_MARK=other\x00", me) // another daemon's
	writeProc(t, root, "400", "400 (dead) Z 1 400 400 0", mark, me)                             // zombie
	writeProc(t, root, "500", "500 (victim) S 1 500 500 0", mark, other)                        // another user's, marked
	writeProc(t, root, "self", "x", mark, me)                                                   // not a pid
	tab, err := ReadTable(root, "DISPATCH_AGENT_MARK", "m1", me)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range tab.Marked {
		pids = append(pids, p.PID)
	}
	if fmt.Sprint(pids) != "[100 101 102 200]" {
		t.Fatalf("marked = %v, want 100 101 102 200 (never another user's 500)", pids)
	}
	if p := tab.Marked[1]; p.Cmd != "sleep (x)" || p.PGID != 100 || p.PPID != 100 {
		t.Fatalf("parsed %+v", p)
	}
	orph := Orphans(tab, map[int]bool{100: true}, 0)
	if len(orph) != 1 || orph[0].PID != 200 {
		t.Fatalf("Orphans = %+v, want only 200 (102 descends from a live agent)", orph)
	}
	young := Table{Marked: []Proc{{PID: 7, PGID: 7, Age: 5 * time.Second}, {PID: 8, PGID: 8, Age: 50 * time.Second}}}
	if orph := Orphans(young, nil, 30*time.Second); len(orph) != 1 || orph[0].PID != 8 {
		t.Fatalf("Orphans with min age = %+v, want only the old one", orph)
	}
}

func findMarked(t *testing.T, key, val string, uid, pid int) (Proc, bool) {
	t.Helper()
	tab, err := ReadTable("", key, val, uid)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tab.Marked {
		if p.PID == pid {
			return p, true
		}
	}
	return Proc{}, false
}

func TestReadTableFindsARealChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "DISPATCH_TEST_MARK=xyz")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := findMarked(t, "DISPATCH_TEST_MARK", "xyz", os.Geteuid(), cmd.Process.Pid); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sleep child %d is not marked", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill checks that the process is still the one that was read: a process
// with another start time (the pid reused) is left alone.
func TestKillChecksIdentity(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "DISPATCH_TEST_MARK=kill")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer cmd.Process.Kill()
	var p Proc
	daemontestPoll(t, func() bool {
		var ok bool
		p, ok = findMarked(t, "DISPATCH_TEST_MARK", "kill", os.Geteuid(), cmd.Process.Pid)
		return ok
	})
	stale := p
	stale.Start++
	if err := Kill("", stale); err != ErrChanged {
		t.Fatalf("Kill of a changed process = %v, want ErrChanged", err)
	}
	select {
	case <-exited:
		t.Fatal("a process that was not the one read was killed")
	case <-time.After(100 * time.Millisecond):
	}
	if err := Kill("", p); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("Kill did not kill")
	}
}

// Run as root, the orphan scan must not pick another user's process, even
// one that carries the marker.
func TestAnotherUsersMarkedProcessIsNotMarked(t *testing.T) {
	otheruser.Require(t)
	cmd := otheruser.Command(t, "env", "DISPATCH_TEST_MARK=foreign", "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// setpriv execs env, which execs sleep: same pid throughout.
	daemontestPoll(t, func() bool {
		tab, _ := ReadTable("", "DISPATCH_TEST_MARK", "foreign", otheruser.UID)
		return len(tab.Marked) == 1
	})
	if _, ok := findMarked(t, "DISPATCH_TEST_MARK", "foreign", os.Geteuid(), cmd.Process.Pid); ok {
		t.Fatal("another user's process is marked as ours")
	}
}

func daemontestPoll(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

func TestAgentOf(t *testing.T) {
	root := t.TempDir()
	const me, daemon = 1000, 50
	mark := "DISPATCH_AGENT_MARK=m1\x00"
	// stat: pid (comm) state ppid pgrp session, then fields up to starttime (22).
	stat := func(pid, ppid, pgrp, sid int, start int) string {
		return fmt.Sprintf("%d (p) S %d %d %d 0 0 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0", pid, ppid, pgrp, sid, start)
	}
	writeProc(t, root, "50", stat(50, 1, 50, 50, 10), "", me)            // the daemon
	writeProc(t, root, "100", stat(100, daemon, 100, 100, 20), mark, me) // mallory's agent (own session)
	writeProc(t, root, "101", stat(101, 100, 100, 100, 21), mark, me)    // its child
	writeProc(t, root, "102", stat(102, 101, 102, 102, 22), "", me)      // setsid, env cleared
	writeProc(t, root, "103", stat(103, 1, 100, 100, 23), "", me)        // reparented, still in the group
	writeProc(t, root, "104", stat(104, 1, 104, 100, 23), "", me)        // reparented, own group, same session
	writeProc(t, root, "200", stat(200, 1, 200, 200, 5), "", me)         // a stranger
	writeProc(t, root, "300", stat(300, 1, 300, 300, 30), mark, me)      // left the family
	writeProc(t, root, "400", stat(400, daemon, 400, 400, 20), "", me)   // master's agent (trusted)
	writeProc(t, root, "401", stat(401, 101, 400, 100, 40), "", me)      // mallory's grandchild that joined master's group
	writeProc(t, root, "402", stat(402, 400, 400, 400, 41), "", me)      // master's child
	writeProc(t, root, "500", stat(500, 1, 500, 500, 50), "", me)        // reuses a pid of the map: not the daemon's child
	writeProc(t, root, "600", stat(600, 601, 600, 600, 60), "", me)      // its parent's pid was reused by a younger process
	writeProc(t, root, "601", stat(601, 400, 601, 601, 61), "", me)
	agents := map[int]string{100: "mallory", 400: "master", 500: "ghost"}
	for _, tt := range []struct {
		pid     int
		chat    string
		isAgent bool
	}{
		{100, "mallory", true}, {101, "mallory", true}, {102, "mallory", true}, {103, "", true}, {104, "", true},
		{200, "", false}, {300, "", true}, {999, "", true},
		{400, "master", true}, {401, "mallory", true}, {402, "master", true},
		{500, "", true}, {600, "", false}, {601, "master", true},
	} {
		chat, isAgent := AgentOf(root, tt.pid, daemon, agents, "DISPATCH_AGENT_MARK", "m1")
		if chat != tt.chat || isAgent != tt.isAgent {
			t.Errorf("AgentOf(%d) = %q, %v; want %q, %v", tt.pid, chat, isAgent, tt.chat, tt.isAgent)
		}
	}
}
