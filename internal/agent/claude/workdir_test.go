package claude

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProjectSlug(t *testing.T) {
	for _, tt := range []struct{ dir, want string }{
		{"/home/me/.local/state/dispatch/work/alice", "-home-me--local-state-dispatch-work-alice"},
		{"/tmp/a_b c+d", "-tmp-a-b-c-d"},
		{"/w/é", "-w--"},  // one UTF-16 unit
		{"/w/😀", "-w---"}, // two UTF-16 units
	} {
		if got, ok := ProjectSlug(tt.dir); got != tt.want || !ok {
			t.Errorf("ProjectSlug(%q) = %q, %v; want %q", tt.dir, got, ok, tt.want)
		}
	}
	if _, ok := ProjectSlug("/" + strings.Repeat("x", 200)); ok {
		t.Error("a 201-character slug is reported usable")
	}
}

func TestConfigDir(t *testing.T) {
	if got := ConfigDir([]string{"HOME=/h"}); got != "/h/.claude" {
		t.Errorf("ConfigDir from HOME = %q", got)
	}
	if got := ConfigDir([]string{"HOME=/h", "CLAUDE_CONFIG_DIR=/c"}); got != "/c" {
		t.Errorf("ConfigDir with CLAUDE_CONFIG_DIR = %q", got)
	}
	if got := ConfigDir(nil); got != "" {
		t.Errorf("ConfigDir without either = %q", got)
	}
}

func TestAdoptConversation(t *testing.T) {
	cfgDir := t.TempDir()
	base := "/srv/dispatch/work"
	legacy, _ := ProjectSlug(base)
	old := filepath.Join(cfgDir, "projects", legacy)
	if err := os.MkdirAll(filepath.Join(old, "sid-1", "tool-results"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "sid-1.jsonl"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := ChatDir(base, "alice")
	moved, err := adoptConversation(cfgDir, dir, "sid-1")
	if err != nil || !moved {
		t.Fatalf("adoptConversation = %v, %v", moved, err)
	}
	slug, _ := ProjectSlug(dir)
	if _, err := os.Stat(filepath.Join(cfgDir, "projects", slug, "sid-1.jsonl")); err != nil {
		t.Errorf("conversation not under the chat's folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "projects", slug, "sid-1", "tool-results")); err != nil {
		t.Errorf("its folder did not move along: %v", err)
	}
	if _, err := os.Stat(filepath.Join(old, "sid-1.jsonl")); !os.IsNotExist(err) {
		t.Errorf("the shared folder still holds it: %v", err)
	}
	if moved, err := adoptConversation(cfgDir, dir, "sid-1"); moved || err != nil {
		t.Errorf("second call = %v, %v; want nothing to do", moved, err)
	}
	if moved, err := adoptConversation(cfgDir, dir, "unknown"); moved || err != nil {
		t.Errorf("unknown id = %v, %v", moved, err)
	}
	if moved, err := adoptConversation(cfgDir, dir, "../x"); moved || err != nil {
		t.Errorf("an id with a slash = %v, %v", moved, err)
	}
}

func TestChatDirsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range []string{"alice", "bob", "signal:+1555", "../../etc", "master"} {
		d := ChatDir("/w", c)
		if filepath.Dir(d) != "/w" || seen[d] {
			t.Errorf("ChatDir(%q) = %q", c, d)
		}
		seen[d] = true
	}
}

func TestEnsureWorkDir(t *testing.T) {
	base := t.TempDir()
	elsewhere := t.TempDir()
	if err := ensureWorkDir(base, filepath.Join(base, "alice")); err != nil {
		t.Fatalf("a new chat folder: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(base, "alice")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("alice's folder: %v %v", fi, err)
	}
	if err := ensureWorkDir(base, filepath.Join(base, "alice")); err != nil {
		t.Errorf("an existing chat folder: %v", err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(base, "bob")); err != nil {
		t.Fatal(err)
	}
	if err := ensureWorkDir(base, filepath.Join(base, "bob")); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlinked chat folder: %v; want refused", err)
	}
	os.WriteFile(filepath.Join(base, "carol"), nil, 0o600)
	if err := ensureWorkDir(base, filepath.Join(base, "carol")); err == nil {
		t.Error("a file in place of a chat folder was accepted")
	}
	os.Mkdir(filepath.Join(base, "dave"), 0o700)
	os.Chmod(filepath.Join(base, "dave"), 0o777)
	if err := ensureWorkDir(base, filepath.Join(base, "dave")); err == nil || !strings.Contains(err.Error(), "others write") {
		t.Errorf("a world-writable chat folder: %v; want refused", err)
	}
}
