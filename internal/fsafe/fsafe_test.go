package fsafe

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/otheruser"
)

const otherUID = otheruser.UID

func asOtherUser(t *testing.T, args ...string) { t.Helper(); otheruser.Run(t, args[0], args[1:]...) }

func sharedDir(t *testing.T) string { return otheruser.SharedDir(t) }

func TestCheckDirRefusesAnotherUsersDirectory(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "dispatch-demo")
	asOtherUser(t, "mkdir", "-m", "0777", dir)
	err := EnsureDir("state directory", dir)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("EnsureDir of a directory another user made = %v, want a refusal naming it and its owner", err)
	}
}

func TestCheckDirRefusesGroupOrWorldWritable(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, 0o1777} {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := CheckDir("state directory", dir); err == nil || !strings.Contains(err.Error(), "group or others write") {
			t.Errorf("mode %o: CheckDir = %v, want a refusal", mode, err)
		}
	}
	ok := t.TempDir()
	if err := os.Chmod(ok, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir("state directory", ok); err != nil {
		t.Errorf("a 0755 directory of our own: %v", err)
	}
}

func TestCheckDirRefusesAnotherUsersSymlink(t *testing.T) {
	shared := sharedDir(t)
	target := t.TempDir()
	link := filepath.Join(shared, "state")
	asOtherUser(t, "ln", "-s", target, link)
	if err := CheckDir("state directory", link); err == nil || !strings.Contains(err.Error(), "symbolic link owned by uid 65534") {
		t.Fatalf("CheckDir through another user's link = %v", err)
	}
}

func TestOpenPrivateDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "dispatch.lock")
	if err := os.Symlink(victim, lock); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenPrivate(lock); err == nil {
		f.Close()
		t.Fatal("OpenPrivate followed a symbolic link")
	} else if !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("error = %v, want it to say symbolic link", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the link's target was changed: %q", b)
	}
}

func TestOpenPrivateTightensModeAndRefusesOtherOwners(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenPrivate(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %o, want 0600", fi.Mode().Perm())
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	if err := os.Chown(p, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenPrivate(p); err == nil {
		f.Close()
		t.Fatal("OpenPrivate accepted another user's file")
	}
}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	if err := CheckFile(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	loose := filepath.Join(dir, "dispatch.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(loose); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after CheckFile = %o, want 0600", fi.Mode().Perm())
	}
	link := filepath.Join(dir, "manager.log")
	if err := os.Symlink(loose, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(link); err == nil {
		t.Error("CheckFile accepted a symbolic link")
	}
}

func TestRemoveStaleSocket(t *testing.T) {
	dir := t.TempDir()
	// a regular file where the socket goes: left alone
	p := filepath.Join(dir, "dispatch.sock")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStaleSocket(p); err == nil {
		t.Error("removed a regular file")
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the file is gone: %v", err)
	}
	os.Remove(p)

	// our own stale socket: removed
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := RemoveStaleSocket(p); err != nil {
		t.Fatalf("stale own socket: %v", err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("stale socket still there: %v", err)
	}

	// another user's socket: left alone
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	ln, err = net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Lchown(p, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStaleSocket(p); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("another user's socket: %v", err)
	}
}
