package security

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/otheruser"
)

// The daemon is not dumpable: a process of its own user without special
// privileges — what an agent is — can read neither its environment (cloud
// keys kept from the agents) nor its memory through /proc. The daemon runs
// as the second user here, so that the reader is an ordinary same-user
// process rather than root.
func TestDaemonEnvironmentAndMemoryUnreadable(t *testing.T) {
	otheruser.Require(t)
	bin, _ := daemontest.Binaries(t)
	shared := otheruser.SharedDir(t)
	own := filepath.Join(shared, "bin")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(own, "dispatch")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(shared, "run")
	otheruser.Run(t, "mkdir", "-m", "0700", run)
	cfg := filepath.Join(own, "dispatch.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+run+"/state\nagent:\n  kind: echo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "AKIA-daemon-only-secret"
	cmd := otheruser.Command(t, exe, "daemon", "--config", cfg)
	cmd.Env = append(os.Environ(), "AWS_SECRET_ACCESS_KEY="+secret)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sock := filepath.Join(run, "state", "dispatch.sock")
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start:\n%s", out.String())
		}
	}
	pid := cmd.Process.Pid // setpriv execs the daemon in place
	if got, err := otheruser.Try(t, "cat", fmt.Sprintf("/proc/%d/environ", pid)); err == nil || strings.Contains(got, secret) {
		t.Errorf("a same-user process read the daemon's environment (err %v): %q", err, got)
	}
	if got, err := otheruser.Try(t, "sh", "-c", fmt.Sprintf("exec 3</proc/%d/mem && echo opened", pid)); err == nil || strings.Contains(got, "opened") {
		t.Errorf("a same-user process opened the daemon's memory: %q", got)
	}
	// The command line is readable by everyone, as for every process: it
	// names the config file and nothing secret.
	if got, err := otheruser.Try(t, "cat", fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || strings.Contains(got, secret) {
		t.Errorf("cmdline: %q, %v", got, err)
	}
}
