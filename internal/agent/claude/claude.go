// Package claude drives the Claude Code CLI over its stream-json protocol:
// one long-lived CLI process per live session, in its own process group, fed
// one user line per turn on stdin and read line by line on stdout.
package claude

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

// Defaults for an empty Config.
const (
	DefaultCommand   = "claude"
	DefaultStopGrace = 5 * time.Second
)

// baseArgs puts the CLI in print mode with stream-json in and out; --verbose
// is required by the CLI for stream-json output.
var baseArgs = []string{"-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"}

// Config configures the driver.
type Config struct {
	// Command is the CLI executable (default "claude").
	Command string
	// Args are extra arguments, appended after dispatch's own.
	Args []string
	// Env is added to the agent's environment (agent.env).
	Env map[string]string
	// EnvPassthrough names variables of the daemon's environment passed on
	// besides DefaultEnvAllow (agent.env_passthrough).
	EnvPassthrough []string
	// Dir holds the CLI's working directories, one per chat (ChatDir) and
	// one for the API probe; they are created when missing.
	Dir string
	// StopGrace is how long Stop waits after closing stdin, and again after
	// SIGTERM, before escalating (default 5s).
	StopGrace time.Duration
	// Clock times Stop's grace periods, turn durations and LastOutput
	// (default: the wall clock).
	Clock clock.Clock
	// Sandbox, when set, runs every agent in a sandbox of its own.
	Sandbox *Sandbox
	// Permissions is how the CLI treats tool calls that need permission
	// (agent.permissions; default deny). With PermissionsAsk the requests
	// go to each process's spec.Permissions.
	Permissions PermissionMode
	// AllowedTools are permission rules the CLI allows without asking
	// (agent.allowed_tools: "Read", "Bash(git status:*)").
	AllowedTools []string
	// PermissionTimeout bounds the wait for an answer to one permission
	// request; unanswered, the call is refused (agent.permission_timeout,
	// default 30m).
	PermissionTimeout time.Duration
	// Conversations, when set (several nodes on one database), saves each
	// chat's conversation files after every turn and restores them before
	// a --resume (conv.go).
	Conversations Conversations
	// Watch, when set, watches every agent's process group (watch.go).
	Watch Watch
}

// Agent starts Claude Code processes. It implements agent.Agent.
type Agent struct {
	cfg Config
}

var _ agent.Agent = (*Agent)(nil)

// New returns a driver for cfg, with defaults filled in.
func New(cfg Config) *Agent {
	if cfg.Command == "" {
		cfg.Command = DefaultCommand
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Agent{cfg: cfg}
}

// Start launches the CLI for spec: --resume ID when spec.Resume, otherwise
// --session-id ID (a new id is generated when spec.SessionID is empty). The
// process outlives ctx; only Stop ends it.
func (a *Agent) Start(ctx context.Context, spec agent.Spec) (agent.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Resume && spec.SessionID == "" {
		return nil, errors.New("claude: resume needs a session id")
	}
	if spec.SessionID == "" {
		spec.SessionID = uuid.NewString()
	}
	if spec.Log == nil {
		spec.Log = slog.New(slog.DiscardHandler)
	}
	dir := a.cfg.Dir
	if dir != "" {
		switch {
		case spec.Ephemeral:
			dir = filepath.Join(dir, probeDir)
		case spec.ChatID != "":
			dir = ChatDir(dir, spec.ChatID)
		}
		if err := ensureWorkDir(a.cfg.Dir, dir); err != nil {
			return nil, fmt.Errorf("claude: work dir: %w", err)
		}
	}
	cmd := exec.Command(a.cfg.Command, a.argv(spec)...)
	cmd.Env = Environ(os.Environ(), a.cfg.EnvPassthrough, a.cfg.Env, spec.Env)
	if a.cfg.Sandbox != nil {
		cmd.Env = sandboxEnv(cmd.Env)
	}
	cmd.Dir = dir
	var pdir string
	if a.cfg.Conversations != nil && !spec.Ephemeral && spec.ChatID != "" && dir != a.cfg.Dir {
		pdir = projectDir(cmd.Env, dir)
	}
	if spec.Resume && pdir != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), convTimeout)
		n, err := restoreConversation(rctx, a.cfg.Conversations, spec.ChatID, pdir)
		cancel()
		if err != nil {
			spec.Log.Warn("could not restore the saved conversation; it may not resume", "dir", pdir, "err", err)
		} else if n > 0 {
			spec.Log.Info("restored the conversation saved by another node", "files", n, "dir", pdir)
		}
	}
	if spec.Resume && dir != a.cfg.Dir {
		// Conversations of earlier versions, which shared one working
		// directory, move into the chat's own.
		if moved, err := adoptConversation(ConfigDir(cmd.Env), dir, spec.SessionID); err != nil {
			spec.Log.Warn("could not move the conversation into the chat's working directory; it may not resume", "dir", dir, "err", err)
		} else if moved {
			spec.Log.Info("moved the conversation into the chat's own working directory", "dir", dir, "session_id", spec.SessionID)
		}
	}
	if a.cfg.Sandbox != nil {
		w, err := a.sandboxed(cmd, spec, dir)
		if err != nil {
			return nil, err
		}
		cmd = w
	}
	var save func(time.Duration)
	if pdir != "" {
		cs, chat, log := a.cfg.Conversations, spec.ChatID, spec.Log
		var mu sync.Mutex // a turn's save and the exit's never overlap
		save = func(timeout time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if n, err := saveConversation(ctx, cs, chat, pdir); err != nil {
				log.Warn("could not save the conversation; another node taking the chat over would resume an older one", "err", err)
			} else if n > 0 {
				log.Debug("conversation saved", "bytes", n)
			}
		}
	}
	cmd.SysProcAttr = sysProcAttr()
	p, err := start(cmd, spec, a.cfg, pdir, save)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// argv is the CLI's argument list for spec (without the command).
func (a *Agent) argv(spec agent.Spec) []string {
	args := slices.Clone(baseArgs)
	if spec.Ephemeral {
		return append(append(args, "--no-session-persistence"), a.cfg.Args...)
	}
	if spec.Resume {
		args = append(args, "--resume", spec.SessionID)
	} else {
		args = append(args, "--session-id", spec.SessionID)
	}
	args = append(args, permissionArgs(a.cfg.Permissions, a.cfg.AllowedTools)...)
	return append(args, a.cfg.Args...)
}

// KeepsFailedTurns reports that the Claude Code CLI keeps the user message
// of a turn that failed at the API in its conversation (and transcript) and
// merges it into the next request: a retry must not send it again.
func (a *Agent) KeepsFailedTurns() bool { return true }
