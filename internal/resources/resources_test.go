package resources

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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

func writeProc(t *testing.T, root string, pid, stat, environ string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	os.WriteFile(filepath.Join(dir, "environ"), []byte(environ), 0o644)
}

func TestMarkedAndOrphans(t *testing.T) {
	root := t.TempDir()
	mark := "DISPATCH_STATE_DIR=/s\x00"
	writeProc(t, root, "100", "100 (claude) S 1 100 100 0", "A=1\x00"+mark)                 // agent, leads its group
	writeProc(t, root, "101", "101 (sleep (x)) S 100 100 100 0", mark+"B=2\x00")            // its child
	writeProc(t, root, "200", "200 (claude) S 1 200 200 0", mark)                           // orphaned agent
	writeProc(t, root, "300", "300 (other) S 1 300 300 0", "DISPATCH_STATE_DIR=/other\x00") // other daemon's
	writeProc(t, root, "400", "400 (dead) Z 1 400 400 0", mark)                             // zombie
	writeProc(t, root, "self", "x", mark)                                                   // not a pid
	got, err := Marked(root, "DISPATCH_STATE_DIR", "/s")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Marked = %+v, want pids 100, 101, 200", got)
	}
	if got[1].Cmd != "sleep (x)" || got[1].PGID != 100 {
		t.Fatalf("parsed %+v", got[1])
	}
	orph := Orphans(got, map[int]bool{100: true}, 0)
	if len(orph) != 1 || orph[0].PID != 200 {
		t.Fatalf("Orphans = %+v, want only 200", orph)
	}
	young := []Proc{{PID: 7, PGID: 7, Age: 5 * time.Second}, {PID: 8, PGID: 8, Age: 50 * time.Second}}
	if orph := Orphans(young, nil, 30*time.Second); len(orph) != 1 || orph[0].PID != 8 {
		t.Fatalf("Orphans with min age = %+v, want only the old one", orph)
	}
}

func TestMarkedFindsARealChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	cmd.Env = append(os.Environ(), "DISPATCH_TEST_MARK=xyz")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := Marked("", "DISPATCH_TEST_MARK", "xyz")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].PID == cmd.Process.Pid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Marked = %+v, want the sleep child %d", got, cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
