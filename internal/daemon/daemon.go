// Package daemon wires dispatch together and runs it: the state directory
// and its lock, logs, store, agent driver, supervisor and control socket,
// and the orderly shutdown of all of them.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/agent/echo"
	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/cluster"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/fsafe"
	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/sdnotify"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/watchdog"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Options are the daemon's non-config inputs.
type Options struct {
	Version string
	// Stderr gets the warnings an operator must see at startup (an agent
	// command that is not installed) and, with EchoLogs, every manager
	// log line.
	Stderr   io.Writer
	EchoLogs bool
	// Ready is called once the control socket is serving.
	Ready func()
	// ConfigFile is the config file's path, hidden from sandboxed agents
	// ("" = none).
	ConfigFile string
	// Watchdog is the command line of the agent watchdog of a cluster
	// node (default: this executable's hidden agent-watchdog command).
	Watchdog []string
}

// ErrLocked means another daemon owns the state directory.
var ErrLocked = errors.New("another dispatch daemon is running")

// Run runs the daemon until ctx is cancelled (the first SIGTERM/SIGINT),
// then shuts down in order: stop accepting, let in-flight turns finish for
// up to shutdown_timeout, stop every agent, close the store. It is Open,
// Serve and Close.
func Run(ctx context.Context, cfg config.Config, opt Options) error {
	d := New(cfg, opt)
	if err := d.Open(ctx); err != nil {
		_ = d.Close()
		return err
	}
	err := d.Serve(ctx)
	if cerr := d.Close(); cerr != nil && d.log != nil {
		d.log.Error("closing the daemon", "err", cerr)
	}
	return err
}

// Daemon is one running dispatch daemon: Open acquires everything (the
// state directory's lock, logs, store, agent driver, supervisor, webhooks,
// control socket) and recovers; Serve serves the control API until its
// context ends; Close shuts everything down in order and releases it.
type Daemon struct {
	cfg    config.Config
	opt    Options
	notify *sdnotify.Notifier

	log *slog.Logger
	st  store.Backend
	// node is this daemon's part of a cluster on PostgreSQL (nil with
	// SQLite).
	node      *cluster.Manager
	sup       *supervisor.Supervisor
	chans     channels
	roles     *roles
	sched     *schedules
	servers   []*http.Server
	listeners []net.Listener
	// started: the supervisor runs (Close shuts it down); served: Serve
	// took over the listeners.
	started, served bool
	// closers release what Open acquired, run by Close in reverse order.
	closers []func() error
	closed  bool
}

// New returns a daemon for cfg; nothing is opened yet.
func New(cfg config.Config, opt Options) *Daemon {
	return &Daemon{cfg: cfg, opt: opt}
}

func (d *Daemon) onClose(f func() error) { d.closers = append(d.closers, f) }

// Open acquires the state directory and everything the daemon runs on, and
// starts the supervisor (which recovers what the last daemon left). On an
// error, Close releases whatever was acquired.
func (d *Daemon) Open(ctx context.Context) error {
	cfg, opt := d.cfg, d.opt
	if err := harden(); err != nil {
		return err
	}
	d.notify = sdnotify.New() // before any agent starts: agents must not inherit NOTIFY_SOCKET
	notify := d.notify
	// Every file the daemon (and the store inside it) creates is private:
	// the database and logs hold people's messages.
	syscall.Umask(0o077)
	if err := fsafe.EnsureDir("state directory", cfg.StateDir); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if err := fsafe.EnsureDir("control socket directory", filepath.Dir(cfg.SocketPath())); err != nil {
		return fmt.Errorf("api.socket: %w", err)
	}
	unlock, err := lock(cfg.LockPath())
	if err != nil {
		return err
	}
	d.onClose(func() error { unlock(); return nil })

	var echo io.Writer
	if opt.EchoLogs {
		echo = opt.Stderr
	}
	logs, err := logging.Open(cfg.StateDir, cfg.Log, echo)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	d.onClose(logs.Close)
	log := logs.Manager()
	d.log = log
	notify.SetLogger(log)
	if notify.Enabled() {
		wd, on := notify.WatchdogInterval()
		log.Info("systemd notification socket found", "socket", notify.Socket(), "watchdog", on, "watchdog_interval", wd)
	}
	_ = notify.Status("starting: opening the store")

	// Several nodes on one PostgreSQL database: chats are owned through
	// leases whose fencing tokens the store checks on every write for a
	// chat; webhooks are delivered, schedules fired and each chat-app
	// channel run by the one node holding that role. The roles' work is
	// added below; the node's loop, started after it, switches it.
	roles := newRoles(log)
	d.roles = roles
	node := cluster.Config{
		Node: cfg.NodeID(), TTL: cfg.Node.LeaseTTL, MaxLive: cfg.Sessions.MaxLive,
		Clock: clock.Real{}, Log: log, Roles: append([]string{cluster.RoleWebhooks, cluster.RoleSchedules}, channelRoles(cfg)...),
		OnRole: roles.set,
	}
	// A cluster node's agents are watched by a process of their own, which
	// kills them when the node stops renewing their deadline (a daemon
	// stopped dead cannot stop them itself) or exits.
	var wd *watchdog.Client
	if cfg.Store.Postgres() {
		argv := opt.Watchdog
		if len(argv) == 0 {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("agent watchdog: %w", err)
			}
			argv = []string{self, watchdog.Command}
		}
		if wd, err = watchdog.Start(argv, clock.Real{}, log); err != nil {
			return err
		}
		d.onClose(wd.Close)
		node.OnDeadline = wd.Renew
	}
	stg, err := openStore(ctx, cfg, node)
	if err != nil {
		return err
	}
	st := stg.st
	d.st = st
	d.node = stg.node
	d.onClose(st.Close)
	if d.node != nil {
		// Refused at once, before anything is served or taken, when
		// another running process has this node.id.
		if err := d.node.Claim(ctx); err != nil {
			return err
		}
		node := d.node
		d.onClose(func() error { node.Unclaim(context.Background()); return nil })
	}

	warnMissingAgent(cfg, log, opt)
	mark, err := agentMarker(cfg.StateDir)
	if err != nil {
		return err
	}
	sb, err := agentSandbox(ctx, cfg, opt, log)
	if err != nil {
		return err
	}
	ag, err := newAgent(cfg, stg.conv, sb, wd)
	if err != nil {
		return err
	}
	scfg := supervisorConfig(cfg, opt.Version, mark)
	if d.node != nil {
		scfg.Owner = d.node
	}
	sup := supervisor.New(scfg, st, ag, clock.Real{}, logs)
	d.sup = sup
	// Webhook delivery: every new event is queued for its endpoints in
	// its own commit, so the fanout is set before anything is written.
	wh, err := webhook.New(st, webhookEndpoints(cfg.Webhooks), webhook.Options{
		Log: log, Registry: sup.Metrics().Registry,
	})
	if err != nil {
		return err
	}
	st.SetWebhookFanout(wh.Fanout)
	if d.node != nil {
		clusterMetrics(sup.Metrics().Registry, d.node)
	}
	d.onClose(func() error { roles.closeAll(); return nil }) // before the store closes
	roles.add(cluster.RoleWebhooks,
		func() { log.Info("this node delivers the webhooks now"); wh.Start() },
		func() { log.Info("this node no longer delivers the webhooks"); wh.Stop() })
	chans, err := openChannels(cfg, st, sup, d.node, sup.Metrics().Registry, log)
	if err != nil {
		return err
	}
	d.chans = chans
	chans.addRoles(roles)
	sched := newSchedules(cfg, st, sup.Accepted, log)
	d.sched = sched
	roles.add(cluster.RoleSchedules,
		func() { log.Info("this node fires the schedules now"); sched.loop.Start() },
		func() { log.Info("this node no longer fires the schedules"); sched.loop.Stop() })

	if cfg.API.Socket != "" {
		// A socket outside the state dir is not covered by its lock: two
		// daemons given the same api.socket would steal and then delete
		// each other's socket.
		unlockSock, err := lock(cfg.SocketPath() + ".lock")
		if err != nil {
			return fmt.Errorf("api.socket %s is in use by another daemon: %w", cfg.SocketPath(), err)
		}
		d.onClose(func() error { unlockSock(); return nil })
	}
	ln, err := listenUnix(cfg.SocketPath())
	if err != nil {
		return err
	}
	b := backend{Supervisor: sup, st: st, wh: wh, node: d.node, ch: chans, sched: sched}
	handler := api.Handler(b, b, sup.Metrics().Registry, log)
	local := newServer(api.GuardPeers(handler))
	gate := &agentGate{agents: sup.AgentPids, trusted: cfg.Sessions.Trusted, mark: mark, log: log}
	local.ConnContext = gate.connContext
	d.servers = []*http.Server{local}
	d.listeners = []net.Listener{ln}
	if cfg.API.Listen != "" {
		srv, tln, err := listenTCP(cfg.API, handler, log)
		if err != nil {
			ln.Close()
			d.listeners = nil
			return err
		}
		d.servers = append(d.servers, srv)
		d.listeners = append(d.listeners, tln)
	}
	_ = notify.Status("starting: recovering sessions and pending messages")
	if err := sup.Start(ctx); err != nil {
		for _, l := range d.listeners {
			l.Close()
		}
		d.listeners = nil
		return err
	}
	d.started = true
	if d.node == nil {
		roles.holdAll() // one node does all the work
	}
	if d.node != nil {
		if err := d.node.Start(ctx, sup); err != nil {
			return err
		}
	}
	return nil
}

// Serve serves the control API until ctx is done (nil) or a listener fails
// (an error, so a service manager restarts the daemon). Meanwhile
// it tells systemd it is ready and feeds its watchdog while the
// supervisor's loops tick, so systemd restarts a wedged daemon.
func (d *Daemon) Serve(ctx context.Context) error {
	cfg, opt, log, sup, notify := d.cfg, d.opt, d.log, d.sup, d.notify
	d.served = true
	serveErr := make(chan error, len(d.servers))
	for i, srv := range d.servers {
		go func() { serveErr <- srv.Serve(d.listeners[i]) }()
	}
	log.Info("dispatch daemon started", "pid", os.Getpid(), "version", opt.Version,
		"state_dir", cfg.StateDir, "socket", cfg.SocketPath(), "agent", cfg.Agent.Kind)
	if err := notify.Ready("running: control socket " + cfg.SocketPath()); err != nil {
		log.Warn("systemd notify failed", "err", err)
	}
	notifyCtx, notifyStop := context.WithCancel(context.Background())
	var notifyWG sync.WaitGroup
	notifyWG.Add(2)
	go func() { defer notifyWG.Done(); notify.RunWatchdog(notifyCtx, sup.Healthy) }()
	go func() {
		defer notifyWG.Done()
		notify.RunStatus(notifyCtx, 30*time.Second, func() string { return statusLine(sup) })
	}()
	defer func() { notifyStop(); notifyWG.Wait() }()
	if opt.Ready != nil {
		opt.Ready()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		return nil
	case err := <-serveErr:
		log.Error("control socket failed", "err", err)
		return fmt.Errorf("control socket: %w", err) // exit non-zero so a service manager restarts us
	}
}

// Close shuts the daemon down in order — the supervisor first (in-flight
// turns may finish for shutdown_timeout, then every agent stops), then the
// control API, the webhooks, the store, the logs and the lock — and
// releases whatever Open acquired. It is idempotent.
func (d *Daemon) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	cfg := d.cfg
	if d.started {
		// stop taking messages in first
		d.roles.close(append(d.chans.roles(), cluster.RoleSchedules)...)
		notify := d.notify
		_ = notify.Stopping(fmt.Sprintf("stopping: in-flight turns may finish for %s, then agents stop", cfg.ShutdownTimeout))
		_ = notify.ExtendTimeout(cfg.ShutdownTimeout + 3*cfg.Agent.StopGrace + 15*time.Second)
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		d.sup.Shutdown(sctx)
		cancel()
		if d.node != nil {
			// After the sessions saved their state under their leases:
			// give the leases back so that the other nodes take the chats
			// at once.
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.node.Stop(rctx)
			rcancel()
		}
		_ = notify.Status("stopping: agents stopped, closing the store")
		hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, srv := range d.servers {
			_ = srv.Shutdown(hctx)
		}
		hcancel()
		if !d.served {
			for _, l := range d.listeners {
				l.Close()
			}
		}
		_ = fsafe.RemoveStaleSocket(cfg.SocketPath())
		d.log.Info("dispatch daemon stopped")
	}
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	return errors.Join(errs...)
}

// storage is the store the config names, built for its mode, and what
// that mode adds: one node on SQLite; or, on PostgreSQL, a node of a
// cluster (internal/cluster: its leases fence the store's writes and its
// wake-ups tell a chat's owner of new messages) whose agents keep their
// conversation files in the database. The mode is decided here, from the
// config, once; nothing later asks a store what it is.
type storage struct {
	st store.Backend
	// node is the cluster node (nil: a single node).
	node *cluster.Manager
	// conv keeps conversations in the database, so that they move with
	// their chats between nodes (nil: they stay on this machine).
	conv claude.Conversations
}

// openStore opens the configured store: the embedded SQLite database in
// the state directory, or the shared PostgreSQL database with node's
// cluster settings.
func openStore(ctx context.Context, cfg config.Config, node cluster.Config) (storage, error) {
	if cfg.Store.Postgres() {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		db, err := postgres.Open(octx, cfg.Store.DSN, postgres.Options{AppName: "dispatch", LeaseTTL: node.TTL})
		if err != nil {
			return storage{}, fmt.Errorf("store (postgres): %w", err)
		}
		n := cluster.New(db, node)
		st := store.New(db, clock.Real{}, store.Options[*postgres.Tx]{Fence: n, Waker: n})
		return storage{st: st, node: n, conv: st}, nil
	}
	for _, f := range []string{cfg.DBPath(), cfg.DBPath() + "-wal", cfg.DBPath() + "-shm"} {
		if err := fsafe.CheckFile(f); err != nil {
			return storage{}, fmt.Errorf("store: %w", err)
		}
	}
	st, err := sqlite.Open(cfg.DBPath(), clock.Real{})
	if err != nil {
		return storage{}, err
	}
	return storage{st: st}, nil
}

// statusLine is the one-line status systemd shows (STATUS=).
func statusLine(sup *supervisor.Supervisor) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := sup.Status(ctx)
	if err != nil {
		return "running; status unavailable: " + err.Error()
	}
	live, failed := 0, 0
	for _, s := range st.Sessions {
		if s.Alive {
			live++
		}
		if s.State == "failed" {
			failed++
		}
	}
	health := "healthy"
	if !st.Daemon.Healthy {
		health = "UNHEALTHY (health loop stalled)"
	}
	return fmt.Sprintf("%s; %d sessions (%d live, %d failed); queue %d pending, %d dead; API %s",
		health, len(st.Sessions), live, failed, st.Queue.Pending, st.Queue.Dead, st.Daemon.API)
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
}

// newAgent makes the configured agent driver; conv (nil: none) keeps the
// claude agent's conversation files in the database; sb (nil: none)
// sandboxes its agents, and wd (nil: none) watches a cluster node's agents.
func newAgent(cfg config.Config, conv claude.Conversations, sb *claude.Sandbox, wd *watchdog.Client) (agent.Agent, error) {
	switch cfg.Agent.Kind {
	case "echo":
		return echo.New(clock.Real{}), nil
	case "claude":
		// The chats' folders are checked like the state directory: an
		// agent.dir another user can write in lets them plant a chat's
		// folder (and the CLAUDE.md or hooks in it).
		dir := cfg.WorkDir()
		if err := fsafe.EnsureDir("agent.dir", dir); err != nil {
			return nil, err
		}
		cc := claude.Config{
			Command: cfg.Agent.Command, Args: cfg.Agent.Args, Env: cfg.Agent.Env, EnvPassthrough: cfg.Agent.EnvPassthrough,
			Dir: dir, StopGrace: cfg.Agent.StopGrace, Clock: clock.Real{}, Sandbox: sb,
			AllowedTools: cfg.Agent.AllowedTools, PermissionTimeout: cfg.Agent.PermissionTimeout,
		}
		mode, err := claude.ParsePermissionMode(cfg.Agent.Permissions)
		if err != nil {
			return nil, fmt.Errorf("agent.permissions: %w", err)
		}
		cc.Permissions = mode
		cc.Conversations = conv
		if wd != nil {
			cc.Watch = wd.Watch
		}
		return claude.New(cc), nil
	}
	return nil, fmt.Errorf("agent.kind: unknown kind %q", cfg.Agent.Kind)
}

func supervisorConfig(cfg config.Config, version, mark string) supervisor.Config {
	h := cfg.Health
	return supervisor.Config{
		CheckInterval:   h.CheckInterval,
		FirstCheckDelay: h.FirstCheckDelay,
		CheckTimeout:    h.CheckTimeout,
		Rules: session.Rules{
			MaxErrors:             h.MaxErrors,
			StuckTimeout:          h.StuckTimeout,
			FirstTurnStuckTimeout: h.FirstTurnStuckTimeout,
			MaxTurn:               h.MaxTurn,
			IdleTimeout:           h.IdleTimeout,
			Master:                cfg.Sessions.Master,
			ExemptSuffix:          cfg.Sessions.ExemptSuffix,
			MaxRestarts:           cfg.Restart.MaxRestarts,
			RestartWindow:         cfg.Restart.Window,
			BackoffInitial:        cfg.Restart.BackoffInitial,
			BackoffMax:            cfg.Restart.BackoffMax,
			MaxAgentRSS:           uint64(h.MaxAgentRSS),
		},
		MaxLive:        cfg.Sessions.MaxLive,
		MemoryInterval: h.MemoryInterval,
		MaxAttempts:    cfg.Queue.MaxAttempts,
		MaxBatch:       cfg.Queue.MaxBatch,
		// three steps of StopGrace each, plus reaping
		StopTimeout: 3*cfg.Agent.StopGrace + 5*time.Second,
		ProbeMin:    cfg.Outage.ProbeInitial,
		ProbeMax:    cfg.Outage.ProbeMax,
		Recovery:    cfg.Outage.RecoveryConcurrency,
		Version:     version,
		Env:         map[string]string{supervisor.MarkerVar: mark},
		StateDir:    cfg.StateDir,
		RetainDone:  cfg.Queue.RetainDone,

		RetainEvents: cfg.Events.Retain,
		CarryOver:    cfg.Sessions.CarryOver,

		PermissionTimeout: cfg.Agent.PermissionTimeout,
	}
}

// lock takes the state directory's lock file (flock), so only one daemon
// runs per state dir. The lock dies with the process, even on kill -9.
func lock(path string) (func(), error) {
	// Never through a symbolic link, and nothing truncated before the lock
	// is ours.
	f, err := fsafe.OpenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		holder := strings.TrimSpace(string(pid))
		if holder == "" {
			holder = "unknown"
		}
		return nil, fmt.Errorf("%w for state dir %s (pid %s; lock %s)", ErrLocked, filepath.Dir(path), holder, path)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// listenUnix listens on the control socket with mode 0600, replacing a stale
// socket left by a killed daemon (the lock proves it is stale) only when it
// is a socket of the daemon's own user.
func listenUnix(path string) (net.Listener, error) {
	if p := wire.SocketPathProblem(path); p != "" {
		return nil, fmt.Errorf("%s: use a shorter state_dir or set api.socket", p)
	}
	if err := fsafe.RemoveStaleSocket(path); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// warnMissingAgent says at startup, on stderr and in the manager log, when
// the claude agent's command cannot be found: the daemon would otherwise
// start without a word and fail the first message's session.
func warnMissingAgent(cfg config.Config, log *slog.Logger, opt Options) {
	if cfg.Agent.Kind != "claude" {
		return
	}
	if _, err := exec.LookPath(cfg.Agent.Command); err == nil {
		return
	}
	msg := fmt.Sprintf("agent command %q not found (agent.command, looked up in $PATH): every session will fail to start until it is installed; run dispatch doctor", cfg.Agent.Command)
	log.Warn(msg)
	if opt.Stderr != nil && !opt.EchoLogs {
		fmt.Fprintln(opt.Stderr, "dispatch: warning:", msg)
	}
}
