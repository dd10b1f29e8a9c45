package schedule

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The zone database is embedded (time/tzdata), so zones load on a machine
// without zoneinfo. The check runs in a child process: the time package
// reads ZONEINFO once per process.
const tzChildEnv = "DISPATCH_SCHEDULE_TZ_CHILD"

func TestZoneChild(t *testing.T) {
	if os.Getenv(tzChildEnv) == "" {
		t.Skip("run by TestZonesWithoutZoneinfo")
	}
	if os.Getenv(tzChildEnv) == "hidden" {
		for _, f := range []string{"/usr/share/zoneinfo/Europe/Berlin", filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")} {
			if _, err := os.Stat(f); err == nil {
				t.Fatalf("%s is still visible", f)
			}
		}
	}
	s, err := Parse(Spec{Kind: Cron, Expr: "0 8 * * *", TZ: "Europe/Berlin", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := s.Next(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if got := f.At.Format(time.RFC3339); got != "2026-12-01T07:00:00Z" {
		t.Fatalf("Berlin 08:00 in December = %s", got)
	}
	if _, err := LoadZone("Nowhere/Atlantis"); err == nil {
		t.Fatal("an unknown zone loaded")
	}
}

func TestZonesWithoutZoneinfo(t *testing.T) {
	empty := t.TempDir()
	run := func(t *testing.T, mode string, argv ...string) {
		cmd := exec.Command(argv[0], append(argv[1:], "-test.run=^TestZoneChild$", "-test.v", "-test.count=1")...)
		cmd.Env = append(os.Environ(), tzChildEnv+"="+mode, "ZONEINFO="+empty, "TZ=")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestZoneChild") {
			t.Fatalf("child (%s): %v\n%s", mode, err, out)
		}
	}
	t.Run("ZONEINFO empty", func(t *testing.T) { run(t, "empty", os.Args[0]) })
	// With bubblewrap, the system's zoneinfo is hidden too: the zones can
	// only come from the binary.
	t.Run("system zoneinfo hidden", func(t *testing.T) {
		bwrap, err := exec.LookPath("bwrap")
		if err != nil {
			t.Skip("bubblewrap not installed")
		}
		if err := exec.Command(bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "true").Run(); err != nil {
			t.Skipf("bubblewrap cannot run here: %v", err)
		}
		argv := []string{bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"}
		// The places the time package looks for zoneinfo on Unix, and
		// the Go installation's own copy.
		for _, d := range []string{"/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ", "/etc/zoneinfo", filepath.Join(runtime.GOROOT(), "lib", "time")} {
			if _, err := os.Stat(d); err == nil {
				argv = append(argv, "--tmpfs", d)
			}
		}
		run(t, "hidden", append(argv, os.Args[0])...)
	})
}
