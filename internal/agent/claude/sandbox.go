package claude

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/safename"
	"github.com/dispatchd/dispatch/internal/sandbox"
)

// Sandbox runs every agent in a bubblewrap sandbox of its own.
type Sandbox struct {
	// Policy is what every agent's sandbox has in common.
	Policy sandbox.Policy
	// Views holds each chat's own view of the CLI's config folder, one
	// folder per chat (hidden from every agent by Policy.Hide).
	Views string
	// Trusted are the chats whose agents get the control socket.
	Trusted []string
}

// sharedConfig are the operator's files in the CLI's config folder that
// every sandboxed agent sees, read-only, in its own view of the folder:
// the credentials and the settings, instructions, commands, agents and
// skills the operator set up. Everything else the CLI keeps there (the
// state file .claude.json and its backups, sessions/, plugins/store,
// todos/, shell-snapshots/, …) is the chat's own, and of projects/ the
// chat sees only its own conversations.
var sharedConfig = []string{".credentials.json", "settings.json", "CLAUDE.md", "commands", "agents", "skills", "output-styles"}

// sandboxEnv sets CLAUDE_CONFIG_DIR explicitly when the agent is
// sandboxed: without it the CLI keeps its state file at ~/.claude.json,
// in the (read-only) home folder, rewriting it by rename; with it the file
// is in the config folder, which is the chat's own writable view.
func sandboxEnv(env []string) []string {
	if d := ConfigDir(env); d != "" {
		return append(env, "CLAUDE_CONFIG_DIR="+d)
	}
	return env
}

// sandboxed returns cmd wrapped in the agent's sandbox: dir is its
// working directory. The chat's view of the CLI's config folder is made
// (seeded with the operator's state file, less its per-project records)
// and the chat's project folder created, so that both can be mounted.
func (a *Agent) sandboxed(cmd *exec.Cmd, spec agent.Spec, dir string) (*exec.Cmd, error) {
	sb := a.cfg.Sandbox
	sa := sandbox.Agent{WorkDir: dir, Trusted: spec.ChatID != "" && !spec.Ephemeral && slices.Contains(sb.Trusted, spec.ChatID)}
	if conf := ConfigDir(cmd.Env); conf != "" && filepath.IsAbs(conf) {
		name := probeDir
		if !spec.Ephemeral && spec.ChatID != "" {
			name = safename.Of(spec.ChatID)
		}
		view := filepath.Join(sb.Views, name)
		if err := os.MkdirAll(conf, 0o700); err != nil {
			return nil, fmt.Errorf("claude: config folder: %w", err)
		}
		if err := os.MkdirAll(view, 0o700); err != nil {
			return nil, fmt.Errorf("claude: sandbox view: %w", err)
		}
		if err := seedState(conf, view, cmd.Env); err != nil {
			return nil, fmt.Errorf("claude: sandbox view: %w", err)
		}
		sa.ConfigDir, sa.ConfigView, sa.Shared = conf, view, sharedConfig
		if !spec.Ephemeral && dir != "" {
			if p := projectDir(cmd.Env, dir); p != "" {
				if err := os.MkdirAll(p, 0o700); err != nil {
					return nil, fmt.Errorf("claude: project folder: %w", err)
				}
				sa.Projects = p
			}
		}
	}
	if cmd.Err != nil {
		return nil, fmt.Errorf("claude: start %s: %w", cmd.Path, cmd.Err) // not found in $PATH
	}
	exe, err := filepath.Abs(cmd.Path)
	if err != nil {
		return nil, err
	}
	// Run by its real path (a link under /tmp would not be there), which
	// stays visible even below /tmp or a hidden folder.
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	p := sb.Policy
	p.Visible = append(slices.Clone(p.Visible), exe)
	argv := p.Wrap(sa, append([]string{exe}, cmd.Args[1:]...))
	w := exec.Command(argv[0], argv[1:]...)
	w.Env, w.Dir = cmd.Env, cmd.Dir
	return w, nil
}

// seedState gives a new view the operator's CLI state file (account,
// onboarding, user id), without its "projects" map, which names every
// chat's folder. An existing one is the chat's own and is kept.
func seedState(conf, view string, env []string) error {
	dst := filepath.Join(view, ".claude.json")
	if _, err := os.Lstat(dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// With $CLAUDE_CONFIG_DIR the CLI keeps it in the config folder,
	// without it in the home folder.
	b, err := os.ReadFile(filepath.Join(conf, ".claude.json"))
	if err != nil {
		if h := envValue(env, "HOME"); h != "" {
			b, err = os.ReadFile(filepath.Join(h, ".claude.json"))
		}
	}
	state := map[string]json.RawMessage{}
	if err == nil {
		_ = json.Unmarshal(b, &state)
	}
	delete(state, "projects")
	out, err := json.Marshal(state)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o600)
}

func envValue(env []string, k string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if len(env[i]) > len(k) && env[i][:len(k)+1] == k+"=" {
			return env[i][len(k)+1:]
		}
	}
	return ""
}
