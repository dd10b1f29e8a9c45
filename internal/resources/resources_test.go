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
	const me = 1000
	mark := "DISPATCH_AGENT_MARK=m1\x00"
	writeProc(t, root, "100", "100 (claude) S 1 100 100 0", mark, me)
	writeProc(t, root, "101", "101 (bash) S 100 100 100 0", mark, me)
	writeProc(t, root, "102", "102 (curl) S 101 102 102 0", "", me) // setsid, env cleared
	writeProc(t, root, "103", "103 (sh) S 1 100 100 0", "", me)     // reparented, still in the group
	writeProc(t, root, "200", "200 (dispatch) S 1 200 200 0", "", me)
	writeProc(t, root, "300", "300 (left) S 1 300 300 0", mark, me)
	agents := map[int]string{100: "mallory"}
	for _, tt := range []struct {
		pid     int
		chat    string
		isAgent bool
	}{
		{100, "mallory", true}, {101, "mallory", true}, {102, "mallory", true}, {103, "mallory", true},
		{200, "", false}, {300, "", true}, {999, "", true},
	} {
		chat, isAgent := AgentOf(root, tt.pid, agents, "DISPATCH_AGENT_MARK", "m1")
		if chat != tt.chat || isAgent != tt.isAgent {
			t.Errorf("AgentOf(%d) = %q, %v; want %q, %v", tt.pid, chat, isAgent, tt.chat, tt.isAgent)
		}
	}
}
