// Package sandbox runs each agent in a bubblewrap (bwrap) sandbox of its
// own, so that a prompt-injected agent can reach neither the daemon's
// files nor another chat's: its own chat's folder and its own view of the
// Claude Code CLI's config folder are writable, the state directory and
// the other chats' folders are not there at all, the rest of the system is
// read-only, /tmp is private, and it has a PID namespace of its own (no
// other agent's process can be seen, signalled or read). The network is
// left open: the CLI needs its API.
//
// Wrap is the one place where an agent's command line is wrapped; Probe
// tells whether bwrap can run on this host.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Mode is agent.sandbox.mode.
type Mode string

const (
	// Auto sandboxes agents where the host supports it, and warns once
	// where it does not.
	Auto Mode = "auto"
	// On refuses to start the daemon without the sandbox.
	On Mode = "on"
	// Off runs agents unsandboxed.
	Off Mode = "off"
)

// DefaultBwrap is where Debian's bubblewrap package installs bwrap.
const DefaultBwrap = "bwrap"

// Policy is what every agent's sandbox has in common.
type Policy struct {
	// Bwrap is the bwrap executable.
	Bwrap string
	// Hide are paths no agent may see: the state directory, the folder of
	// the chats' folders, the control socket's directory, the config and
	// token files. A directory is covered by an empty tmpfs, a file by
	// /dev/null. Missing paths are skipped.
	Hide []string
	// Writable are more paths every agent may write
	// (agent.sandbox.writable); missing ones are skipped.
	Writable []string
	// Visible are paths shown read-only even below a hidden one or /tmp
	// (the agent's own executable).
	Visible []string
	// Socket is the control socket, bound into trusted agents' sandboxes
	// only.
	Socket string
}

// Agent is one agent's own part of its sandbox. All paths are absolute.
type Agent struct {
	// WorkDir is the chat's folder: writable, the working directory.
	WorkDir string
	// ConfigDir is the CLI's config folder as the agent sees it
	// ($CLAUDE_CONFIG_DIR, or ~/.claude) and ConfigView the chat's own
	// folder mounted there, writable; Shared are the operator's files in
	// the real ConfigDir shown read-only on top of it (credentials,
	// settings); Projects is the real folder of the chat's conversations
	// (ConfigDir/projects/<slug>), mounted at the same path, writable, so
	// that the daemon finds them where the CLI wrote them.
	ConfigDir, ConfigView string
	Shared                []string
	Projects              string
	// Trusted agents (sessions.trusted) get the control socket.
	Trusted bool
}

// Wrap returns the command line that runs argv (the agent's command and
// its arguments) in a's sandbox under p. Paths are mounted where their
// symbolic links lead (bwrap cannot make a mount point through a link).
func (p Policy) Wrap(a Agent, argv []string) []string {
	args := []string{p.Bwrap,
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
		"--unshare-pid", "--unshare-ipc",
		"--die-with-parent",
	}
	// Later mounts cover earlier ones: a writable path never uncovers a
	// hidden one, and the agent's own folders come last.
	for _, w := range p.Writable {
		w = real(w)
		args = append(args, "--bind-try", w, w)
	}
	hidden := []string{"/tmp"}
	for _, h := range p.Hide {
		h = real(h)
		fi, err := os.Stat(h)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			args = append(args, "--tmpfs", h)
		default:
			args = append(args, "--ro-bind", os.DevNull, h)
		}
		hidden = append(hidden, h)
	}
	for _, v := range p.Visible {
		// Only what a hidden folder or the private /tmp covers needs
		// showing again; the rest is there already.
		if v = real(v); below(v, hidden) {
			args = append(args, "--ro-bind-try", v, v)
		}
	}
	if a.ConfigDir != "" && a.ConfigView != "" {
		conf := real(a.ConfigDir)
		args = append(args, "--bind", real(a.ConfigView), conf)
		for _, s := range a.Shared {
			f := filepath.Join(conf, s)
			args = append(args, "--ro-bind-try", f, f)
		}
		if a.Projects != "" {
			pr := real(a.Projects)
			args = append(args, "--bind", pr, pr)
		}
	}
	if a.WorkDir != "" {
		w := real(a.WorkDir)
		args = append(args, "--bind", w, w, "--chdir", w)
	}
	if a.Trusted && p.Socket != "" {
		sock := real(p.Socket)
		args = append(args, "--bind-try", sock, sock)
	}
	return append(append(args, "--"), argv...)
}

// real is p with its symbolic links resolved, or p when that fails.
func real(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// below reports whether p is one of dirs or below one.
func below(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// Probe reports why bwrap cannot run a sandbox on this host (not
// installed, user namespaces disabled, …), or nil when it can: it runs
// `true` in a sandbox like an agent's.
func Probe(ctx context.Context, bwrap string) error {
	path, err := exec.LookPath(bwrap)
	if err != nil {
		return fmt.Errorf("bubblewrap (%s) is not installed: %w (Debian/Ubuntu: apt-get install bubblewrap)", bwrap, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
		"--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--", "true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "timed out"
		}
		return fmt.Errorf("%s cannot make a sandbox here: %s (it needs unprivileged user namespaces, or root)", path, msg)
	}
	return nil
}
