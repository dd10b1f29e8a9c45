// Package otheruser lets tests act as a second local user (uid and gid
// 65534, "nobody"), the way another person on the machine would: it runs
// commands through setpriv. That needs root; without it the test is skipped
// with a message saying so (and fails under CI=true).
package otheruser

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// UID is the second user's uid (and gid).
const UID = 65534

// Require skips t unless the tests run as root (needed to switch users);
// under CI (CI=true), which runs as root, it fails t instead: a boundary
// test that silently skipped there would prove nothing.
func Require(t testing.TB) {
	t.Helper()
	skip := t.Skip
	if os.Getenv("CI") == "true" {
		skip = t.Fatal
	}
	if os.Geteuid() != 0 {
		skip("acting as a second local user needs root (setpriv); run the tests as root to cover this boundary")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		skip("setpriv (util-linux) is not installed")
	}
}

// Command is a command that runs as the second user.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	Require(t)
	return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", name}, args...)...)
}

// Run runs a command as the second user and fails t if it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := Command(t, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("as uid %d: %s %v: %v\n%s", UID, name, args, err, out)
	}
}

// Try runs a command as the second user and returns its combined output and
// error: for attempts that should fail.
func Try(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	out, err := Command(t, name, args...).CombinedOutput()
	return string(out), err
}

// SharedDir returns a new directory like /tmp (world-writable, sticky) in
// which both users can create files; it is removed when the test ends.
func SharedDir(t testing.TB) string {
	t.Helper()
	base, err := os.MkdirTemp("", "shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	d := filepath.Join(base, "tmp")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]os.FileMode{base: 0o755, d: 0o1777} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	return d
}
