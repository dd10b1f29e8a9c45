// Package claude drives the Claude Code CLI over its stream-json protocol:
// one long-lived CLI process per live session, in its own process group, fed
// one user line per turn on stdin and read line by line on stdout.
package claude

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
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
	// Env is added to the inherited environment (agent.env).
	Env map[string]string
	// Dir is the working directory of the CLI; created when missing.
	Dir string
	// StopGrace is how long Stop waits after closing stdin, and again after
	// SIGTERM, before escalating (default 5s).
	StopGrace time.Duration
	// Clock times Stop's grace periods, turn durations and LastOutput
	// (default: the wall clock).
	Clock clock.Clock
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
	if a.cfg.Dir != "" {
		if err := os.MkdirAll(a.cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("claude: work dir: %w", err)
		}
	}
	cmd := exec.Command(a.cfg.Command, a.argv(spec)...)
	cmd.Env = Environ(os.Environ(), a.cfg.Env, spec.Env)
	cmd.Dir = a.cfg.Dir
	cmd.SysProcAttr = sysProcAttr()
	return start(cmd, spec, a.cfg)
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
	return append(args, a.cfg.Args...)
}

// Environ is base without CLAUDECODE (set inside a Claude Code session, it
// makes the CLI refuse to start as a nested session) and without the keys
// that the overlays set, followed by the overlays in order; later overlays
// win and keys are sorted so the result is deterministic.
func Environ(base []string, overlays ...map[string]string) []string {
	merged := map[string]string{}
	for _, o := range overlays {
		maps.Copy(merged, o)
	}
	env := make([]string, 0, len(base)+len(merged))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, over := merged[k]; k == "CLAUDECODE" || over {
			continue
		}
		env = append(env, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		env = append(env, k+"="+merged[k])
	}
	return env
}

// KeepsFailedTurns reports that the Claude Code CLI keeps the user message
// of a turn that failed at the API in its conversation (and transcript) and
// merges it into the next request: a retry must not send it again.
func (a *Agent) KeepsFailedTurns() bool { return true }
