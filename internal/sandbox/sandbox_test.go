package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWrap(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	conf := filepath.Join(dir, "config.yaml")
	os.Mkdir(state, 0o700)
	os.WriteFile(conf, nil, 0o600)
	p := Policy{
		Bwrap:    "bwrap",
		Hide:     []string{state, conf, filepath.Join(dir, "missing")},
		Writable: []string{"/srv/shared"},
		Visible:  []string{"/opt/claude", "/tmp/go-build1/stub"}, // only the one below /tmp is bound again
		Socket:   filepath.Join(state, "dispatch.sock"),
	}
	a := Agent{
		WorkDir:    filepath.Join(state, "work", "alice"),
		ConfigDir:  "/home/me/.claude",
		ConfigView: filepath.Join(state, "sandbox", "alice"),
		Shared:     []string{".credentials.json"},
		Projects:   "/home/me/.claude/projects/-x-alice",
	}
	got := strings.Join(p.Wrap(a, []string{"/opt/claude", "-p"}), " ")
	want := strings.Join([]string{"bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --unshare-pid --unshare-ipc --die-with-parent",
		"--bind-try /srv/shared /srv/shared",
		"--tmpfs " + state, "--ro-bind /dev/null " + conf,
		"--ro-bind-try /tmp/go-build1/stub /tmp/go-build1/stub",
		"--bind " + a.ConfigView + " /home/me/.claude",
		"--ro-bind-try /home/me/.claude/.credentials.json /home/me/.claude/.credentials.json",
		"--bind /home/me/.claude/projects/-x-alice /home/me/.claude/projects/-x-alice",
		"--bind " + a.WorkDir + " " + a.WorkDir + " --chdir " + a.WorkDir,
		"-- /opt/claude -p"}, " ")
	if got != want {
		t.Errorf("Wrap:\n got %s\nwant %s", got, want)
	}
	// Only a trusted agent gets the control socket.
	a.Trusted = true
	if args := p.Wrap(a, []string{"x"}); !slices.Contains(args, p.Socket) {
		t.Errorf("a trusted agent lacks the socket: %v", args)
	}
}

func TestProbe(t *testing.T) {
	if err := Probe(context.Background(), filepath.Join(t.TempDir(), "no-bwrap")); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("Probe of a missing bwrap: %v", err)
	}
}
