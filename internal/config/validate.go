package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Validate checks every value and the rules between values. It reports all
// problems found, each naming its key ("config: queue.max_attempts: must be
// at least 1"), joined with errors.Join; each is a *Error.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be greater than 0, got %s", d)
		}
	}
	atLeast := func(key string, v, min int) bool {
		if v < min {
			bad(key, "must be at least %d", min)
			return false
		}
		return true
	}

	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	} else if strings.ContainsRune(c.StateDir, 0) {
		bad("state_dir", "must not contain a NUL byte")
	}

	h := c.Health
	positive("health.check_interval", h.CheckInterval)
	if h.FirstCheckDelay < 0 {
		bad("health.first_check_delay", "must not be negative, got %s", h.FirstCheckDelay)
	}
	positive("health.check_timeout", h.CheckTimeout)
	positive("health.idle_timeout", h.IdleTimeout)
	atLeast("health.max_errors", h.MaxErrors, 1)
	positive("health.stuck_timeout", h.StuckTimeout)
	positive("health.first_turn_stuck_timeout", h.FirstTurnStuckTimeout)
	if h.MaxAgentRSS < 0 {
		bad("health.max_agent_rss", "must not be negative (0 turns the limit off)")
	} else if h.MaxAgentRSS > 0 && h.MaxAgentRSS < 16*MiB {
		bad("health.max_agent_rss", "must be 0 (no limit) or at least 16MiB, got %s", h.MaxAgentRSS)
	}
	positive("health.memory_interval", h.MemoryInterval)
	positive("health.max_turn", h.MaxTurn)

	r := c.Restart
	restartsOK := atLeast("restart.max_restarts", r.MaxRestarts, 1)
	positive("restart.window", r.Window)
	positive("restart.backoff_initial", r.BackoffInitial)
	positive("restart.backoff_max", r.BackoffMax)
	if r.BackoffInitial > 0 && r.BackoffMax > 0 && r.BackoffMax < r.BackoffInitial {
		bad("restart.backoff_max", "must be at least restart.backoff_initial (%s), got %s", r.BackoffInitial, r.BackoffMax)
	}

	q := c.Queue
	if atLeast("queue.max_attempts", q.MaxAttempts, 1) && restartsOK && q.MaxAttempts >= r.MaxRestarts {
		// A poison message must go dead before it can use up the
		// session's restart budget: it is always below the limit.
		bad("queue.max_attempts", "must be below restart.max_restarts (%d), got %d", r.MaxRestarts, q.MaxAttempts)
	}
	o := c.Outage
	positive("outage.probe_initial", o.ProbeInitial)
	positive("outage.probe_max", o.ProbeMax)
	if o.ProbeInitial > 0 && o.ProbeMax > 0 && o.ProbeMax < o.ProbeInitial {
		bad("outage.probe_max", "must be at least outage.probe_initial (%s), got %s", o.ProbeInitial, o.ProbeMax)
	}
	atLeast("outage.recovery_concurrency", o.RecoveryConcurrency, 1)
	atLeast("queue.max_batch", q.MaxBatch, 1)
	if q.RetainDone < 0 {
		bad("queue.retain_done", "must not be negative, got %s", q.RetainDone)
	}

	s := c.Sessions
	if err := chatIDProblem(s.Master); err != "" {
		bad("sessions.master", "%s", err)
	}
	if s.ExemptSuffix == "" {
		bad("sessions.exempt_suffix", "must not be empty (every chat would be exempt from idle reaping)")
	} else if !utf8.ValidString(s.ExemptSuffix) || hasControl(s.ExemptSuffix) {
		bad("sessions.exempt_suffix", "must be printable UTF-8 without control characters")
	}

	if s.MaxLive < 0 {
		bad("sessions.max_live", "must not be negative (0 means no cap), got %d", s.MaxLive)
	}
	for i, chat := range s.Trusted {
		if err := chatIDProblem(chat); err != "" {
			bad(fmt.Sprintf("sessions.trusted[%d]", i), "%s", err)
		}
	}

	a := c.Agent
	switch a.Kind {
	case "claude":
		if strings.TrimSpace(a.Command) == "" {
			bad("agent.command", `must not be empty when agent.kind is "claude"`)
		}
	case "echo":
	default:
		bad("agent.kind", `must be "claude" or "echo"`)
	}
	if strings.ContainsRune(a.Command, 0) {
		bad("agent.command", "must not contain a NUL byte")
	}
	switch a.Sandbox.Mode {
	case "auto", "on", "off":
	default:
		bad("agent.sandbox.mode", `must be "auto", "on" or "off", got %q`, a.Sandbox.Mode)
	}
	for i, arg := range a.Args {
		if strings.ContainsRune(arg, 0) {
			bad(fmt.Sprintf("agent.args[%d]", i), "must not contain a NUL byte")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a.Env)) {
		v := a.Env[k]
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			bad("agent.env", "invalid variable name %q", k)
		case strings.ContainsRune(v, 0):
			bad("agent.env."+k, "must not contain a NUL byte")
		}
	}
	for i, name := range a.EnvPassthrough {
		base := strings.TrimSuffix(name, "*")
		if base == "" || strings.ContainsAny(base, "=*\x00") {
			bad(fmt.Sprintf("agent.env_passthrough[%d]", i), "invalid variable name %q (a name, or a prefix ending in *)", name)
		}
	}
	if strings.ContainsRune(a.Dir, 0) {
		bad("agent.dir", "must not contain a NUL byte")
	}
	positive("agent.stop_grace", a.StopGrace)
	switch a.Permissions {
	case "deny", "ask", "bypass":
	default:
		bad("agent.permissions", `must be "deny", "ask" or "bypass"`)
	}
	for i, t := range a.AllowedTools {
		if strings.TrimSpace(t) == "" || strings.ContainsAny(t, "\x00\n") {
			bad(fmt.Sprintf("agent.allowed_tools[%d]", i), "invalid rule %q (a tool name, or a tool with a pattern such as Bash(git status:*))", t)
		}
	}
	positive("agent.permission_timeout", a.PermissionTimeout)

	api := c.API
	if c.StateDir != "" || api.Socket != "" {
		key := "state_dir"
		hint := "use a shorter state_dir or set api.socket"
		if api.Socket != "" {
			key, hint = "api.socket", "use a shorter path"
		}
		if p := wire.SocketPathProblem(c.SocketPath()); p != "" {
			bad(key, "%s; %s", p, hint)
		}
	}
	if api.Listen != "" {
		if _, _, err := net.SplitHostPort(api.Listen); err != nil {
			bad("api.listen", "invalid TCP address %q (want host:port, e.g. 127.0.0.1:8080)", api.Listen)
		}
		if api.TokenFile == "" {
			bad("api.token_file", "required when api.listen is set")
		}
	}
	for _, f := range []struct{ key, val string }{
		{"api.metrics_token_file", api.MetricsTokenFile},
		{"api.tls_cert_file", api.TLSCertFile},
		{"api.tls_key_file", api.TLSKeyFile},
	} {
		if f.val != "" && api.Listen == "" {
			bad(f.key, "only used with api.listen, which is not set")
		}
	}
	if (api.TLSCertFile == "") != (api.TLSKeyFile == "") {
		bad("api.tls_key_file", "api.tls_cert_file and api.tls_key_file go together: set both or neither")
	}
	if api.MetricsTokenFile != "" && api.MetricsTokenFile == api.TokenFile {
		bad("api.metrics_token_file", "must not be the full-access api.token_file")
	}

	l := c.Log
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", `must be "debug", "info", "warn" or "error"`)
	}
	atLeast("log.max_size_mb", l.MaxSizeMB, 1)
	atLeast("log.max_files", l.MaxFiles, 1)

	positive("shutdown_timeout", c.ShutdownTimeout)

	if c.Sessions.CarryOver < 0 || c.Sessions.CarryOver > 100 {
		bad("sessions.carry_over", "must be from 0 to 100, got %d", c.Sessions.CarryOver)
	}
	positive("events.retain", c.Events.Retain)
	if c.Schedules.CatchUpWindow < time.Minute {
		bad("schedules.catch_up_window", "must be at least 1m (a firing up to a minute late is on time anyway), got %s", c.Schedules.CatchUpWindow)
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.DSN != "" {
			bad("store.dsn", `is for store.driver "postgres" only`)
		}
	case "postgres":
		if c.Store.DSN == "" {
			bad("store.dsn", `is required with store.driver "postgres" (e.g. postgres://dispatch@db/dispatch)`)
		} else if !strings.HasPrefix(c.Store.DSN, "postgres://") && !strings.HasPrefix(c.Store.DSN, "postgresql://") &&
			!strings.Contains(c.Store.DSN, "=") {
			// The message never repeats the DSN: it may hold a password.
			bad("store.dsn", "must be a postgres:// URL or a key=value connection string")
		}
	default:
		bad("store.driver", `must be "sqlite" or "postgres"`)
	}
	if c.Node.ID != "" && (!utf8.ValidString(c.Node.ID) || hasControl(c.Node.ID) || len(c.Node.ID) > 100 || strings.ContainsAny(c.Node.ID, " \t")) {
		bad("node.id", "must be printable UTF-8 without spaces, at most 100 bytes")
	}
	if c.Node.LeaseTTL < 3*time.Second {
		bad("node.lease_ttl", "must be at least 3s, got %s", c.Node.LeaseTTL)
	}
	names := map[string]int{}
	for i, w := range c.Webhooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		if err := webhook.CheckURL(w.URL); err != nil {
			bad(key+".url", "%s", err)
		}
		// The message never repeats the secret.
		if _, err := webhook.ParseSecret(w.Secret); err != nil {
			bad(key+".secret", "%s", err)
		}
		if _, err := events.ParseTypes(strings.Join(w.Events, ",")); err != nil {
			bad(key+".events", "%s", err)
		}
		positive(key+".timeout", w.Timeout)
		positive(key+".retry_for", w.RetryFor)
		if w.Name != "" && (!utf8.ValidString(w.Name) || hasControl(w.Name) || len(w.Name) > 200) {
			bad(key+".name", "must be printable UTF-8 of at most 200 bytes")
		}
		name := w.Name
		if name == "" {
			name = webhook.DefaultName(w.URL)
		}
		if j, dup := names[name]; dup {
			bad(key+".name", "webhooks[%d] has the same name %q; give each endpoint its own name", j, name)
		}
		names[name] = i
	}
	c.validateChannels(bad)

	return errors.Join(errs...)
}

// chatIDProblem applies the API's chat id rule (wire.ChatIDProblem): a
// chat the config names must be one a message can be sent to. It returns
// "" when id is valid.
func chatIDProblem(id string) string {
	if p := wire.ChatIDProblem(id); p != "" {
		return "chat id " + p
	}
	return ""
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// webhookDefaults fills each endpoint's unset timeout and retry_for.
func (c *Config) webhookDefaults() {
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if w.Timeout == 0 {
			w.Timeout = webhook.DefaultTimeout
		}
		if w.RetryFor == 0 {
			w.RetryFor = webhook.DefaultRetryFor
		}
	}
}
