package security

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/otheruser"
)

// The README demo once used /tmp/dispatch-demo: another user who creates
// that folder first owns it, and could read and replace everything in it.
func TestStateDirPrecreatedByAnotherUserIsRefused(t *testing.T) {
	otheruser.Require(t)
	dir := filepath.Join(otheruser.SharedDir(t), "dispatch-demo")
	otheruser.Run(t, "mkdir", "-m", "0777", dir)
	d := daemontest.New(t, daemontest.Set(daemontest.With(echoAgent, map[string]any{"state_dir": dir})))
	out := refusedStart(t, d)
	if !strings.Contains(out, dir) || !strings.Contains(out, "owned by uid 65534") {
		t.Errorf("refusal does not name the directory and its owner:\n%s", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the daemon wrote into another user's directory: %v", ents)
	}
}

func TestWorldWritableStateDirIsRefused(t *testing.T) {
	d := daemontest.New(t, daemontest.Set(echoAgent))
	if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.StateDir, 0o777); err != nil {
		t.Fatal(err)
	}
	out := refusedStart(t, d)
	if !strings.Contains(out, d.StateDir) || !strings.Contains(out, "group or others write") {
		t.Errorf("refusal does not say what is wrong:\n%s", out)
	}
}

func TestSocketInASharedDirectoryIsRefused(t *testing.T) {
	otheruser.Require(t)
	sock := filepath.Join(otheruser.SharedDir(t), "dispatch.sock")
	d := daemontest.New(t, daemontest.Set(daemontest.With(echoAgent, map[string]any{"api.socket": sock})))
	out := refusedStart(t, d)
	if !strings.Contains(out, filepath.Dir(sock)) || !strings.Contains(out, "group or others write") {
		t.Errorf("refusal does not name the socket's directory:\n%s", out)
	}
}

// Every file the daemon creates is readable by its user alone: another
// user cannot read a message out of the database or its WAL even when the
// state dir itself can be listed (0755).
func TestDaemonFilesAreUnreadableByOtherUsers(t *testing.T) {
	otheruser.Require(t)
	d := daemontest.New(t, daemontest.Set(echoAgent))
	if err := os.MkdirAll(d.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.Base, d.StateDir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.Restart()
	const secret = "my secret diary entry"
	id := d.Send("alice", secret)
	d.WaitMessage(id, "done", 10e9)

	var files []string
	_ = filepath.Walk(d.StateDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		switch {
		case fi.IsDir():
			if p != d.StateDir && fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: directory mode %04o, want 0700", p, fi.Mode().Perm())
			}
		case fi.Mode()&os.ModeSocket != 0, fi.Mode().IsRegular():
			files = append(files, p)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %04o, want 0600", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	for _, name := range []string{"dispatch.db", "dispatch.db-wal", "dispatch.lock", "dispatch.sock", "logs/manager.log"} {
		p := filepath.Join(d.StateDir, name)
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if out, err := otheruser.Try(t, "cat", p); err == nil || strings.Contains(out, secret) {
			t.Errorf("another user read %s (err %v)", name, err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no files found under the state dir")
	}
}

// A lock file replaced by a symbolic link must not make the daemon truncate
// the link's target.
func TestLockSymlinkIsNotFollowed(t *testing.T) {
	d := daemontest.New(t, daemontest.Set(echoAgent))
	if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(d.Base, "victim.txt")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(d.StateDir, "dispatch.lock")); err != nil {
		t.Fatal(err)
	}
	out := refusedStart(t, d)
	if !strings.Contains(out, "dispatch.lock") || !strings.Contains(out, "symbolic link") {
		t.Errorf("refusal does not name the lock link:\n%s", out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target was changed to %q", b)
	}
}

// A log file replaced by a symbolic link is refused too.
func TestLogSymlinkIsNotFollowed(t *testing.T) {
	d := daemontest.New(t, daemontest.Set(echoAgent))
	logs := filepath.Join(d.StateDir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(d.Base, "victim.txt")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(logs, "manager.log")); err != nil {
		t.Fatal(err)
	}
	out := refusedStart(t, d)
	if !strings.Contains(out, "manager.log") || !strings.Contains(out, "symbolic link") {
		t.Errorf("refusal does not name the log link:\n%s", out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target was changed to %q", b)
	}
}

// Someone else's socket where the control socket goes is neither removed
// nor replaced: the daemon refuses to start.
func TestForeignSocketIsNotReplaced(t *testing.T) {
	otheruser.Require(t)
	d := daemontest.New(t, daemontest.Set(echoAgent))
	if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(d.StateDir, "dispatch.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Lchown(sock, otheruser.UID, otheruser.UID); err != nil {
		t.Fatal(err)
	}
	out := refusedStart(t, d)
	if !strings.Contains(out, sock) || !strings.Contains(out, "owned by uid 65534") {
		t.Errorf("refusal does not name the socket and its owner:\n%s", out)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("the foreign socket was removed or replaced: %v", err)
	}
	// And a plain file there is left alone too.
	ln.Close()
	_ = os.Remove(sock)
	if err := os.WriteFile(sock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = refusedStart(t, d)
	if !strings.Contains(out, "not a socket") {
		t.Errorf("refusal does not say the path is not a socket:\n%s", out)
	}
}
