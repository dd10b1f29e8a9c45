package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/sandbox"
)

// agentSandbox decides whether agents run sandboxed (agent.sandbox.mode):
// nil means not. With "on" a host where bwrap cannot run is an error (the
// daemon refuses to start, saying why); with "auto" it is a warning, once,
// and agents run as they are.
func agentSandbox(ctx context.Context, cfg config.Config, opt Options, log *slog.Logger) (*claude.Sandbox, error) {
	mode := sandbox.Mode(cfg.Agent.Sandbox.Mode)
	if cfg.Agent.Kind != "claude" || mode == sandbox.Off {
		return nil, nil
	}
	if err := sandbox.Probe(ctx, sandbox.DefaultBwrap); err != nil {
		if mode == sandbox.On {
			return nil, fmt.Errorf("agent.sandbox.mode is on but %v", err)
		}
		msg := fmt.Sprintf("agents run unsandboxed (agent.sandbox.mode auto): %v; each agent can then read the other chats' folders and signal their agents", err)
		log.Warn(msg)
		if opt.Stderr != nil && !opt.EchoLogs {
			fmt.Fprintln(opt.Stderr, "dispatch: warning:", msg)
		}
		return nil, nil
	}
	views := filepath.Join(cfg.StateDir, "sandbox")
	hide := []string{cfg.StateDir, cfg.WorkDir(), filepath.Dir(cfg.SocketPath())}
	for _, f := range []string{opt.ConfigFile, cfg.API.TokenFile, cfg.API.MetricsTokenFile, cfg.API.TLSKeyFile} {
		if f != "" {
			if abs, err := filepath.Abs(f); err == nil {
				hide = append(hide, abs)
			}
		}
	}
	slices.Sort(hide) // a folder before what is below it
	hide = slices.Compact(hide)
	log.Info("agents run sandboxed (bubblewrap)", "writable", cfg.Agent.Sandbox.Writable)
	return &claude.Sandbox{
		Policy: sandbox.Policy{
			Bwrap:    sandbox.DefaultBwrap,
			Hide:     hide,
			Writable: cfg.Agent.Sandbox.Writable,
			Socket:   cfg.SocketPath(),
		},
		Views:   views,
		Trusted: cfg.Sessions.Trusted,
	}, nil
}
