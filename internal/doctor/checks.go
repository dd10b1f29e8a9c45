package doctor

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, as the store uses

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/fsafe"
	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/wire"
)

// DefaultAPIBaseURL is where Claude Code talks to without ANTHROPIC_BASE_URL.
const DefaultAPIBaseURL = "https://api.anthropic.com"

// Disk thresholds: below either minimum the disk check fails; above
// warnUsedPercent it warns.
const (
	minFreeBytes    = 500 << 20
	minFreePercent  = 5.0
	warnUsedPercent = 90.0
)

// ---- config -----------------------------------------------------------------

// CheckConfig loads the config and reports on it. On failure the detail is
// the loader's error, which names the key.
func CheckConfig(path string, load func(string) (config.Config, error)) (config.Config, Result) {
	r := Result{Name: "config"}
	where := path
	if where == "" {
		where = "built-in defaults (no --config or $DISPATCH_CONFIG)"
	}
	cfg, err := load(path)
	if err != nil {
		r.Status = Fail
		r.Detail = err.Error()
		var ce *config.Error
		switch {
		case errors.As(err, &ce) && ce.Key != "":
			r.Hint = fmt.Sprintf("fix %s in %s (every key: internal/config/REFERENCE.md)", ce.Key, where)
		case errors.Is(err, fs.ErrNotExist):
			r.Hint = "create the file, or point --config / $DISPATCH_CONFIG at an existing one"
		default:
			r.Hint = "fix the file so that it is one valid YAML document (internal/config/REFERENCE.md)"
		}
		return cfg, r
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s: agent %s, state_dir %s", where, cfg.Agent.Kind, cfg.StateDir)
	if w := config.ReadableSecrets(path, cfg); w != "" {
		r.Status = Warn
		r.Detail += "; " + w
		r.Hint = "chmod 600 " + path
	}
	return cfg, r
}

// ---- agent ------------------------------------------------------------------

// CheckAgent finds the agent's executable and runs `<command> --version`
// with the agent's environment. The echo agent needs nothing.
func CheckAgent(ctx context.Context, cfg config.Config, env Env) Result {
	env = env.withDefaults()
	r := Result{Name: "agent"}
	if cfg.Agent.Kind != "claude" {
		r.Status = Pass
		r.Detail = fmt.Sprintf("built-in %s agent: no executable needed", cfg.Agent.Kind)
		return r
	}
	cmd := cfg.Agent.Command
	path, err := env.LookPath(cmd)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("agent.command %q: %v", cmd, unwrapExec(err))
		r.Hint = "install Claude Code (scripts/install-tools.sh, or its official installer) or set agent.command " +
			"to its absolute path — under systemd or launchd $PATH is short, so prefer an absolute path"
		return r
	}
	vctx, cancel := context.WithTimeout(ctx, env.VersionTimeout)
	defer cancel()
	out, err := env.RunVersion(vctx, path, claude.Environ(env.Environ(), cfg.Agent.EnvPassthrough, cfg.Agent.Env))
	version := firstLine(out)
	if err != nil {
		r.Status = Fail
		if errors.Is(err, context.DeadlineExceeded) {
			r.Detail = fmt.Sprintf("%s --version did not finish within %s", path, env.VersionTimeout)
		} else {
			r.Detail = fmt.Sprintf("%s --version failed: %v", path, err)
		}
		if version != "" {
			r.Detail += ": " + version
		}
		r.Hint = "run it by hand with the same environment (agent.env) and fix what it says; " +
			"a Node.js-based install also needs `node` in $PATH"
		return r
	}
	if version == "" {
		version = "no version printed"
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s: %s", path, version)
	return r
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			if len(line) > 120 {
				line = line[:120] + "…"
			}
			return line
		}
	}
	return ""
}

// ---- AI API -----------------------------------------------------------------

// APIBaseURL is the API address the agent uses and where it comes from:
// agent.env, the environment, or the default.
func APIBaseURL(cfg config.Config, getenv func(string) string) (base, source string) {
	if v := cfg.Agent.Env["ANTHROPIC_BASE_URL"]; v != "" {
		return v, "agent.env.ANTHROPIC_BASE_URL"
	}
	if v := getenv("ANTHROPIC_BASE_URL"); v != "" {
		return v, "$ANTHROPIC_BASE_URL"
	}
	return DefaultAPIBaseURL, "default"
}

// CheckAPI sends one HEAD request to the API's base URL: any HTTP answer
// means the API is reachable from here. It never sends a real request to
// the model.
func CheckAPI(ctx context.Context, cfg config.Config, env Env) Result {
	env = env.withDefaults()
	r := Result{Name: "AI API"}
	if cfg.Agent.Kind != "claude" {
		r.Status = Pass
		r.Detail = fmt.Sprintf("not needed (%s agent)", cfg.Agent.Kind)
		return r
	}
	base, source := APIBaseURL(cfg, env.Getenv)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s = %q is not an http(s) URL", source, base)
		r.Hint = "set it to the API's base URL, e.g. https://api.anthropic.com"
		return r
	}
	hctx, cancel := context.WithTimeout(ctx, env.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodHead, u.String(), nil)
	if err != nil {
		r.Status = Fail
		r.Detail = err.Error()
		return r
	}
	req.Header.Set("User-Agent", "dispatch-doctor")
	start := time.Now()
	resp, err := env.HTTP.Do(req)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s (%s) not reachable: %v", u.Redacted(), source, errText(err))
		r.Hint = "check the network, DNS and proxy settings"
		if source == "default" {
			r.Hint += " (or set ANTHROPIC_BASE_URL in agent.env)"
		} else {
			r.Hint += ", and " + source
		}
		r.Hint += "; while the API is unreachable dispatch holds messages and probes: nothing is lost, nothing is answered"
		return r
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s (%s) answers: HTTP %d in %s", u.Redacted(), source, resp.StatusCode, took)
	return r
}

// errText shortens the url.Error wrapping ("Head \"…\": dial tcp: …").
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer before the timeout"
	}
	return err.Error()
}

// ---- state dir, log dir -----------------------------------------------------

// CheckStateDir checks that state_dir is a directory we can write to (a
// temporary file is created and removed), or that it can be created.
func CheckStateDir(cfg config.Config) Result {
	r := writableDir("state dir", cfg.StateDir, "state_dir")
	if r.Status == Pass {
		for _, d := range []struct{ what, dir string }{
			{"state directory", cfg.StateDir},
			{"control socket directory", filepath.Dir(cfg.SocketPath())},
		} {
			if _, err := os.Stat(d.dir); err != nil {
				continue // created by the daemon, 0700
			}
			if err := fsafe.CheckDir(d.what, d.dir); err != nil {
				r.Status = Fail
				r.Detail = err.Error()
				r.Hint = "the daemon refuses to start: it keeps messages and its control socket there, so only its own user may write to it; use a directory of your own (mkdir -m 700)"
				return r
			}
		}
		if fi, err := os.Stat(cfg.StateDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
			r.Status = Warn
			r.Detail += fmt.Sprintf("; mode %04o lets other users in", fi.Mode().Perm())
			r.Hint = fmt.Sprintf("chmod 700 %s (it holds message texts and the control socket)", cfg.StateDir)
		}
	}
	return r
}

// CheckTokens checks the TCP listener's token files: they must exist,
// hold a long enough token and be readable by their owner alone (the
// daemon refuses them otherwise).
func CheckTokens(cfg config.Config) Result {
	r := Result{Name: "API tokens"}
	if cfg.API.Listen == "" {
		r.Status, r.Detail = Pass, "no TCP listener (api.listen unset): the control socket only"
		return r
	}
	for _, f := range []struct{ key, path string }{
		{"api.token_file", cfg.API.TokenFile},
		{"api.metrics_token_file", cfg.API.MetricsTokenFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := api.LoadToken(f.key, f.path); err != nil {
			r.Status, r.Detail = Fail, err.Error()
			r.Hint = "put a long random token in it, readable by the daemon's user alone: head -c 32 /dev/urandom | base64 > FILE && chmod 600 FILE"
			return r
		}
	}
	r.Status, r.Detail = Pass, "token files are private"
	if cfg.API.TLSCertFile == "" {
		r.Detail += "; TCP without TLS: keep api.listen on loopback behind a tunnel"
	}
	return r
}

// CheckLogDir checks that state_dir/logs is writable (or can be created),
// and that an existing manager.log can be appended to.
func CheckLogDir(cfg config.Config) Result {
	dir := filepath.Dir(logging.ManagerPath(cfg.StateDir))
	r := writableDir("log dir", dir, "")
	if r.Status != Pass {
		return r
	}
	for _, p := range []string{logging.ManagerPath(cfg.StateDir), logging.LifecyclePath(cfg.StateDir)} {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			r.Status = Fail
			r.Detail = fmt.Sprintf("%s: %v", p, errors.Unwrap(err))
			r.Hint = "the daemon's user must own its log files: chown them, or remove them (they are recreated)"
			return r
		}
		f.Close()
	}
	return r
}

// writableDir checks dir: an existing directory must take a temporary
// file; a missing one must be creatable (its nearest existing ancestor is
// writable). key names the config key, if any, for the hint.
func writableDir(name, dir, key string) Result {
	r := Result{Name: name}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		anc, aerr := existingAncestor(dir)
		if aerr == nil {
			aerr = syscall.Access(anc, 2 /* W_OK */)
		}
		if aerr != nil {
			r.Status = Fail
			r.Detail = fmt.Sprintf("%s does not exist and cannot be created (%s: %v)", dir, anc, aerr)
			r.Hint = fmt.Sprintf("create it for the daemon's user: mkdir -p -m 700 %s", dir)
			if key != "" {
				r.Hint += ", or set " + key + " to a writable place"
			}
			return r
		}
		r.Status = Pass
		r.Detail = fmt.Sprintf("%s does not exist yet; the daemon creates it", dir)
		return r
	case err != nil:
		r.Status = Fail
		r.Detail = err.Error()
		r.Hint = "check the permissions of its parent directories"
		return r
	case !fi.IsDir():
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s exists but is not a directory", dir)
		r.Hint = "move the file away"
		if key != "" {
			r.Hint += ", or set " + key + " elsewhere"
		}
		return r
	}
	f, err := os.CreateTemp(dir, ".dispatch-doctor-*")
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s is not writable: %v", dir, errors.Unwrap(err))
		r.Hint = fmt.Sprintf("the daemon's user must own it: chown -R \"$(id -un)\" %s && chmod 700 %s", dir, dir)
		return r
	}
	name2 := f.Name()
	f.Close()
	if err := os.Remove(name2); err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s: cannot remove files: %v", dir, err)
		r.Hint = "check the directory's permissions (sticky bit, ownership)"
		return r
	}
	r.Status = Pass
	r.Detail = dir + " is writable"
	return r
}

// existingAncestor is dir itself or its nearest existing parent.
func existingAncestor(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			return d, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return d, err
		}
		if d == filepath.Dir(d) {
			return d, fs.ErrNotExist
		}
	}
}

// ---- disk -------------------------------------------------------------------

// CheckDisk reports free space on the file system of state_dir: a failure
// under 5 % or 500 MB free, a warning over 90 % used.
func CheckDisk(cfg config.Config, env Env) Result {
	env = env.withDefaults()
	r := Result{Name: "disk space"}
	dir, err := existingAncestor(cfg.StateDir)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s: %v", dir, err)
		return r
	}
	d, err := env.DiskUsage(dir)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("statfs %s: %v", dir, err)
		return r
	}
	used := d.Total - min(d.Free, d.Total)
	usedPct := 0.0
	if used+d.Avail > 0 {
		usedPct = 100 * float64(used) / float64(used+d.Avail) // as df computes Use%
	}
	freePct := 100 - usedPct
	r.Detail = fmt.Sprintf("%s free (%.0f%% used) on the file system of %s", bytesText(d.Avail), usedPct, dir)
	switch {
	case d.Avail < minFreeBytes || freePct < minFreePercent:
		r.Status = Fail
		r.Hint = fmt.Sprintf("free some space: dispatch needs at least %s and %.0f%% free to store messages safely "+
			"(old rotated logs live in %s)", bytesText(minFreeBytes), minFreePercent, filepath.Join(cfg.StateDir, "logs"))
	case usedPct > warnUsedPercent:
		r.Status = Warn
		r.Hint = "the disk is filling up: free some space before it runs out"
	default:
		r.Status = Pass
	}
	return r
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// ---- store ------------------------------------------------------------------

// CheckStore opens the database read-only — without the daemon's lock, so
// it works while a daemon runs — and runs PRAGMA quick_check. A missing
// database is fine: the daemon creates it.
func CheckStore(ctx context.Context, cfg config.Config, env Env) Result {
	env = env.withDefaults()
	if cfg.Store.Postgres() {
		return checkPostgres(ctx, cfg, env)
	}
	r := Result{Name: "store"}
	path := cfg.DBPath()
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if pid, alive := lockHolder(cfg, env); alive {
			r.Status = Fail
			r.Detail = fmt.Sprintf("%s is missing while the daemon (pid %d) runs: it was removed under it", path, pid)
			r.Hint = "messages accepted since then are gone at its next start: stop it, restore the state directory " +
				"from a backup if there is one, and start it again"
			return r
		}
		r.Status = Pass
		r.Detail = path + " not created yet (the daemon creates it)"
		return r
	case err != nil:
		r.Status = Fail
		r.Detail = err.Error()
		r.Hint = "the daemon's user must be able to read and write it"
		return r
	case !fi.Mode().IsRegular():
		r.Status = Fail
		r.Detail = path + " is not a regular file"
		r.Hint = "move it away; the daemon creates a new database"
		return r
	}
	qctx, cancel := context.WithTimeout(ctx, env.StoreTimeout)
	defer cancel()
	res, err := quickCheck(qctx, path)
	if err != nil {
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s: %v", path, err)
		r.Hint = "stop the daemon and copy dispatch.db, dispatch.db-wal and dispatch.db-shm aside before any repair " +
			"(sqlite3 dispatch.db .recover)"
		return r
	}
	size := bytesText(uint64(fi.Size()))
	if wal, err := os.Stat(path + "-wal"); err == nil && wal.Size() > 0 {
		size += " + " + bytesText(uint64(wal.Size())) + " WAL"
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s (%s, schema v%d): quick_check ok", path, size, res.version)
	return r
}

type quickResult struct{ version int }

func quickCheck(ctx context.Context, path string) (quickResult, error) {
	var res quickResult
	abs, err := filepath.Abs(path)
	if err != nil {
		return res, err
	}
	// A "file:" URI so that SQLite honours mode=ro (a plain name would
	// drop it and could create the file); the path is escaped so a '?' in
	// it cannot cut the name.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	db, err := sql.Open("sqlite", u.String()+"?mode=ro&_pragma="+url.QueryEscape("busy_timeout(5000)"))
	if err != nil {
		return res, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return res, err
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return res, err
		}
		if line != "ok" && len(problems) < 5 {
			problems = append(problems, line)
		}
	}
	if err := rows.Close(); err != nil {
		return res, err
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	if len(problems) > 0 {
		return res, fmt.Errorf("quick_check: %s", strings.Join(problems, "; "))
	}
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&res.version); err != nil {
		return res, err
	}
	return res, nil
}

// ---- daemon -----------------------------------------------------------------

// CheckDaemon looks at the control socket. No socket (or a stale one) means
// the daemon is not running: a neutral line, or a failure with
// Env.RequireDaemon. A socket that answers GET /healthz 200 passes (with a
// summary of GET /v1/status); 503, or a daemon that holds the lock but does
// not answer, fails.
func CheckDaemon(ctx context.Context, cfg config.Config, env Env) Result {
	env = env.withDefaults()
	r := Result{Name: "daemon"}
	sock := cfg.SocketPath()
	notRunning := func(detail string) Result {
		r.Status = Info
		if env.RequireDaemon {
			r.Status = Fail
		}
		r.Detail = "not running: " + detail
		r.Hint = "start it: dispatch daemon (or systemctl --user start dispatch; see contrib/README.md)"
		return r
	}
	fi, err := os.Lstat(sock)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if pid, alive := lockHolder(cfg, env); alive {
			r.Status = Fail
			r.Detail = fmt.Sprintf("pid %d holds %s but there is no control socket at %s", pid, cfg.LockPath(), sock)
			r.Hint = "it may still be starting; otherwise look at logs/manager.log and restart it"
			return r
		}
		return notRunning("no control socket at " + sock)
	case err != nil:
		r.Status = Fail
		r.Detail = err.Error()
		return r
	case fi.Mode().Type() != fs.ModeSocket:
		r.Status = Fail
		r.Detail = sock + " exists but is not a socket"
		r.Hint = "move it away, or set api.socket to another path"
		return r
	}

	c := client.ForSocket(sock, env.SocketTimeout)
	defer c.Close()
	code, body, err := c.Raw(ctx, http.MethodGet, "/healthz", nil)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			r.Status = Fail
			r.Detail = fmt.Sprintf("%s: permission denied", sock)
			r.Hint = "run dispatch doctor as the daemon's user (the socket is mode 0600)"
			return r
		}
		if pid, alive := lockHolder(cfg, env); alive {
			r.Status = Fail
			r.Detail = fmt.Sprintf("pid %d holds the lock but %s does not answer: %v", pid, sock, errText(err))
			r.Hint = "look at logs/manager.log; restart it (a stuck daemon needs kill -TERM, then kill -9)"
			return r
		}
		return notRunning("stale control socket " + sock + " (the next start replaces it)")
	}
	if code != http.StatusOK {
		r.Status = Fail
		r.Detail = fmt.Sprintf("unhealthy: GET /healthz answered %d %s", code, apiErrorText(body))
		r.Hint = "its health loop has stalled: look at logs/manager.log and restart it " +
			"(under systemd the watchdog restarts it)"
		return r
	}
	r.Status = Pass
	r.Detail = "healthy (" + sock + ")"
	// The status summary is a bonus: a failure here does not fail the check.
	if code, body, err := c.Raw(ctx, http.MethodGet, "/v1/status", nil); err == nil && code == http.StatusOK {
		var st wire.Status
		if json.Unmarshal(body, &st) == nil {
			r.Detail = "healthy: " + summary(st)
			if st.Daemon.StoreLost != "" {
				r.Status = Fail
				r.Detail = "refusing messages: " + st.Daemon.StoreLost
				r.Hint = "messages accepted since then may be gone: stop the daemon, restore the state directory " +
					"(dispatch.db, dispatch.db-wal, dispatch.db-shm) from a backup or move it aside, and start it again"
				return r
			}
			if st.Daemon.StoreFull != "" {
				r.Status = Warn
				r.Hint = "the store refuses writes for lack of space (" + st.Daemon.StoreFull +
					"): free space on its disk; accepts are answered 507 meanwhile and nothing accepted is lost"
			}
			if st.Daemon.ResourceError != "" {
				r.Status = Warn
				r.Hint = "the daemon ran out of a resource of its own (" + st.Daemon.ResourceError +
					"): raise its limits (LimitNOFILE, memory); sessions retry on their own"
			}
			if failed := failedChats(st); len(failed) > 0 {
				r.Status = Warn
				r.Hint = fmt.Sprintf("failed sessions no longer restart on their own: dispatch sessions restart %s", failed[0])
			} else if st.Daemon.API == "down" {
				r.Status = Warn
				r.Hint = "the AI API is unreachable from the daemon: messages are held until it answers again"
			}
		}
	}
	return r
}

// lockHolder reads the pid the daemon writes into its lock file and reports
// whether that process exists. It never takes the lock.
func lockHolder(cfg config.Config, env Env) (int, bool) {
	b, err := os.ReadFile(cfg.LockPath())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, env.ProcessAlive(pid)
}

func apiErrorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return "(" + e.Error + ")"
	}
	return ""
}

// failedChats are the chats whose sessions failed.
func failedChats(s wire.Status) []string {
	var out []string
	for _, ss := range s.Sessions {
		if ss.State == "failed" {
			out = append(out, ss.ChatID)
		}
	}
	return out
}

// summary is the daemon check's line: pid, version, uptime, sessions, queue.
func summary(s wire.Status) string {
	up := time.Duration(s.Daemon.UptimeSeconds * float64(time.Second)).Round(time.Second)
	txt := fmt.Sprintf("pid %d, version %s, up %s, API %s, %d session", s.Daemon.PID, s.Daemon.Version, up,
		s.Daemon.API, len(s.Sessions))
	if len(s.Sessions) != 1 {
		txt += "s"
	}
	if f := failedChats(s); len(f) > 0 {
		txt += fmt.Sprintf(" (%d failed)", len(f))
	}
	txt += fmt.Sprintf(", queue %d pending / %d in flight / %d dead", s.Queue.Pending, s.Queue.Inflight, s.Queue.Dead)
	return txt
}

// CheckSandbox says whether the agents will run sandboxed
// (agent.sandbox.mode): with "on" a host where bwrap cannot run fails
// (the daemon would refuse to start), with "auto" it warns.
func CheckSandbox(ctx context.Context, cfg config.Config, env Env) Result {
	r := Result{Name: "sandbox"}
	mode := cfg.Agent.Sandbox.Mode
	if cfg.Agent.Kind != "claude" {
		r.Status, r.Detail = Pass, "not needed: the "+cfg.Agent.Kind+" agent runs inside the daemon"
		return r
	}
	if mode == "off" {
		r.Status, r.Detail = Info, "agents run unsandboxed (agent.sandbox.mode off)"
		r.Hint = "agent.sandbox.mode: auto or on isolates each agent (bubblewrap)"
		return r
	}
	err := env.SandboxProbe(ctx)
	switch {
	case err == nil:
		r.Status, r.Detail = Pass, "agents run sandboxed (bubblewrap, mode "+mode+")"
	case mode == "on":
		r.Status, r.Detail = Fail, err.Error()
		r.Hint = "install bubblewrap (apt-get install bubblewrap) or allow unprivileged user namespaces; the daemon refuses to start until then"
	default:
		r.Status, r.Detail = Warn, "agents would run unsandboxed: "+err.Error()
		r.Hint = "install bubblewrap (apt-get install bubblewrap) so that agents cannot reach each other's chats"
	}
	return r
}
