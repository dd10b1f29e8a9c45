// Package supervisor owns every chat's session: it creates them lazily,
// routes accepted messages to them, runs the periodic health check and idle
// reaping, recovers after a restart of the daemon, and shuts
// everything down in order.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/breaker"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/metrics"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/webhook"
)

// Config is what the supervisor takes from the daemon's configuration.
type Config struct {
	CheckInterval   time.Duration
	FirstCheckDelay time.Duration
	CheckTimeout    time.Duration
	Rules           session.Rules
	MaxAttempts     int
	MaxBatch        int
	StopTimeout     time.Duration
	ProbeMin        time.Duration
	ProbeMax        time.Duration
	Recovery        int
	Version         string
	// RetainDone is how long done messages are kept (0: forever).
	RetainDone time.Duration
	// RetainEvents is how long the event feed keeps events (0: forever).
	RetainEvents time.Duration
	// StateDir enables the resource checks (disk, descriptors, orphans).
	StateDir string
	// Env is added to every agent's environment.
	Env map[string]string
	// MaxLive caps the agents running at once (0: no cap).
	MaxLive int
	// MemoryInterval is how often the agents' memory is sampled (0: never).
	MemoryInterval time.Duration
	// CarryOver is sessions.carry_over: earlier exchanges a conversation
	// that had to start over carries into its first turn.
	CarryOver int
}

// Logs is where the supervisor writes: the manager log, the lifecycle log
// and one log per session. A Logs that is also an EventLog (the daemon's
// logging.Logs) is given typed lifecycle events; any other gets each one
// rendered as its name, chat and reason.
type Logs interface {
	Manager() *slog.Logger
	Lifecycle(event, chat, reason string, attrs ...slog.Attr)
	Session(chat string) *slog.Logger
}

// EventLog writes typed lifecycle events (logging.Logs.Event).
type EventLog interface {
	Event(ev lifecycle.Event, attrs ...slog.Attr)
}

// ErrUnknownChat is returned for operations on a chat that has no session.
var ErrUnknownChat = errors.New("unknown chat")

// Supervisor routes messages to sessions and keeps them healthy.
type Supervisor struct {
	cfg     Config
	store   *store.Store
	clock   clock.Clock
	logs    Logs
	log     *slog.Logger
	breaker *breaker.Breaker
	metrics *metrics.Metrics
	deps    *session.Deps
	started time.Time

	mu       sync.Mutex
	sessions map[string]*session.Session
	closing  bool

	res resourceWatch // owned by the check loop
	// daemonErr is the daemon's last own resource error (descriptors,
	// memory, processes) and when it happened: reported in its health.
	daemonErr atomic.Pointer[daemonError]
	probePid  atomic.Int64 // the API probe's agent process, owned by no session
	// storeLost is set once the database is found removed or replaced.
	storeLost atomic.Pointer[error]

	capacity                    // the live cap and the memory watch (livecap.go, memory.go)
	apiEvents chan events.Event // api_down / api_up, written in order (events.go)

	lastTick atomic.Int64 // unix nanos of the check loop's last tick
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New builds a supervisor; Start recovers state and starts its loops.
func New(cfg Config, st *store.Store, ag agent.Agent, clk clock.Clock, logs Logs) *Supervisor {
	s := &Supervisor{
		cfg:      cfg,
		store:    st,
		clock:    clk,
		logs:     logs,
		log:      logs.Manager(),
		sessions: make(map[string]*session.Session),
		started:  clk.Now(),
	}
	s.metrics = metrics.New(s)
	s.breaker = breaker.New(breaker.Config{
		Min: cfg.ProbeMin, Max: cfg.ProbeMax, Recovery: cfg.Recovery,
		Probe: s.probe, OnChange: s.apiChanged,
		// a probe as silent as a stuck turn is unanswered
		ProbeTimeout: cfg.Rules.StuckTimeout,
	}, clk)
	s.deps = &session.Deps{
		Store:       st,
		Agent:       ag,
		Clock:       clk,
		Gate:        s.breaker,
		Observer:    observer{s},
		Rules:       cfg.Rules,
		MaxAttempts: cfg.MaxAttempts,
		MaxBatch:    cfg.MaxBatch,
		StopTimeout: cfg.StopTimeout,
		Log:         logs.Session,
		Env:         cfg.Env,
		NewID:       newID,
		History:     st,
		CarryOver:   cfg.CarryOver,
	}
	s.initCapacity()
	s.apiEvents = make(chan events.Event, 64)
	return s
}

// Metrics exposes the metrics registry for the HTTP API.
func (s *Supervisor) Metrics() *metrics.Metrics { return s.metrics }

// Start recovers from the store — messages in flight when the last daemon
// died go back to pending, sessions that were live start again with resume,
// every chat with pending messages is woken — and starts the health loop.
func (s *Supervisor) Start(ctx context.Context) error {
	n, err := s.store.ResetInflight(ctx)
	if err != nil {
		return fmt.Errorf("recover in-flight messages: %w", err)
	}
	if n > 0 {
		s.log.Warn("messages in flight at the last shutdown were put back in line", "count", n)
	}
	recs, err := s.store.Sessions(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	pending, err := s.store.ChatsWithPending(ctx)
	if err != nil {
		return fmt.Errorf("load pending chats: %w", err)
	}
	if s.cfg.StateDir != "" {
		s.killOrphans(true) // leftovers of a daemon that was killed
	}
	live := 0
	s.mu.Lock()
	for _, rec := range recs {
		if rec.Live {
			live++
		}
		s.sessions[rec.ChatID] = session.New(s.deps, rec, rec.Live)
	}
	s.mu.Unlock()
	if len(pending) > 0 {
		s.breaker.Pace(pending...) // a backlog may meet an API that is still down
	}
	for _, chat := range pending {
		if ss := s.session(chat); ss != nil {
			ss.Notify()
		}
	}
	s.log.Info("supervisor started", "sessions", len(recs), "resumed", live, "chats_pending", len(pending))

	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.lastTick.Store(s.clock.Now().UnixNano())
	s.wg.Add(5)
	go func() { defer s.wg.Done(); s.breaker.Run(loopCtx) }()
	go func() { defer s.wg.Done(); s.checkLoop(loopCtx) }()
	go func() { defer s.wg.Done(); s.writeAPIEvents(loopCtx) }()
	go func() { defer s.wg.Done(); s.hibernationLoop(loopCtx) }()
	go func() { defer s.wg.Done(); s.memoryLoop(loopCtx) }()
	return nil
}

// session returns chat's session, creating it on first use. Concurrent
// first messages of one chat create exactly one session. Once shutdown has
// begun it creates none and returns nil: a message accepted then is picked
// up by the next start.
func (s *Supervisor) session(chat string) *session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.sessions[chat]; ok {
		return ss
	}
	if s.closing {
		return nil
	}
	ss := session.New(s.deps, store.SessionRecord{ChatID: chat}, false)
	s.sessions[chat] = ss
	return ss
}

func (s *Supervisor) lookup(chat string) (*session.Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[chat]
	return ss, ok
}

func (s *Supervisor) all() []*session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session.Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// ErrClosing is returned by Submit once shutdown has begun.
var ErrClosing = errors.New("daemon is shutting down")

// Submit accepts a message: it returns only after the message is durably
// stored, then wakes the chat's session. A repeated (chat, clientID) is a
// duplicate and stores nothing; with another text it is store.ErrConflict.
func (s *Supervisor) Submit(ctx context.Context, chat, text, clientID string) (string, bool, error) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return "", false, ErrClosing
	}
	if err := s.storeIntact(); err != nil {
		return "", false, err
	}
	got, dup, err := s.store.Accept(ctx, chat, text, clientID)
	if err != nil {
		return "", false, err
	}
	if dup {
		s.metrics.Duplicates.Inc()
		return got, true, nil
	}
	s.metrics.Accepted.Inc()
	if ss := s.session(chat); ss != nil {
		ss.Notify()
	}
	return got, false, nil
}

// Kill stops chat's agent, keeping its session_id; waiting messages go to a
// new agent at once.
func (s *Supervisor) Kill(ctx context.Context, chat string) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return ErrUnknownChat
	}
	return ss.Kill(ctx)
}

// Pause holds chat's messages until Resume.
func (s *Supervisor) Pause(ctx context.Context, chat string) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return ErrUnknownChat
	}
	return ss.Pause(ctx)
}

// Resume lets a paused chat's messages go, in order.
func (s *Supervisor) Resume(ctx context.Context, chat string) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return ErrUnknownChat
	}
	return ss.Resume(ctx)
}

// Restart restarts chat's session now (clean: without resume), clearing a
// failed state.
func (s *Supervisor) Restart(ctx context.Context, chat string, clean bool) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return ErrUnknownChat
	}
	return ss.OperatorRestart(ctx, clean)
}

// Exempt sets or clears chat's run-time idle exemption. Like every
// operation on a chat, it needs a chat that exists: a typo must not create
// a session.
func (s *Supervisor) Exempt(ctx context.Context, chat string, on bool) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return ErrUnknownChat
	}
	return ss.SetExempt(ctx, on)
}

// RetryMessage puts a dead message back in line and wakes its chat.
func (s *Supervisor) RetryMessage(ctx context.Context, id string) error {
	m, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := s.store.Retry(ctx, id); err != nil {
		return err
	}
	s.emit(lifecycle.Event{Kind: lifecycle.Retry, Cause: lifecycle.Operator, Chat: m.ChatID, Detail: "operator retry of message " + id})
	if ss := s.session(m.ChatID); ss != nil {
		ss.Notify()
	}
	return nil
}

// DropMessage deletes a dead message, with a log line.
func (s *Supervisor) DropMessage(ctx context.Context, id string) error {
	m, err := s.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := s.store.Drop(ctx, id); err != nil {
		return err
	}
	s.emit(lifecycle.Event{Kind: lifecycle.Drop, Cause: lifecycle.Operator, Chat: m.ChatID,
		Detail: fmt.Sprintf("operator dropped dead message %s (attempts %d, last error: %s)", id, m.Attempts, m.Error)})
	return nil
}

// Healthy reports whether the check loop has ticked recently.
func (s *Supervisor) Healthy() bool {
	last := time.Unix(0, s.lastTick.Load())
	limit := max(s.cfg.FirstCheckDelay, s.cfg.CheckInterval) + s.cfg.CheckTimeout + time.Minute
	return s.clock.Now().Sub(last) <= limit
}

// Shutdown stops accepting, lets in-flight turns finish until ctx is done,
// then stops every agent (in parallel) and the loops.
func (s *Supervisor) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	if s.slots != nil {
		s.slots.Close() // no agent starts for a waiting chat during shutdown
	}
	if s.cancel != nil {
		s.cancel()
	}
	var wg sync.WaitGroup
	for _, ss := range s.all() {
		wg.Add(1)
		go func() { defer wg.Done(); ss.Shutdown(ctx) }()
	}
	wg.Wait()
	s.wg.Wait()
	s.log.Info("supervisor stopped")
}

// ProbeText is what an API-health probe asks the agent.
const ProbeText = "Reply with the single word OK."

// probe asks the API, through a throwaway agent conversation that is not
// saved, whether it answers again. Only an outage (or rejected credentials)
// keeps the breaker open; an agent that cannot even start keeps it open too.
func (s *Supervisor) probe(ctx context.Context) bool {
	proc, err := s.deps.Agent.Start(ctx, agent.Spec{
		ChatID: "dispatch-probe", SessionID: newID(), Ephemeral: true,
		Log: s.log.With("probe", true), Env: s.cfg.Env,
	})
	if err != nil {
		s.log.Warn("API probe: agent did not start", "err", err)
		return false
	}
	s.probePid.Store(int64(proc.Pid()))
	defer s.probePid.Store(0)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
		_ = proc.Stop(sctx)
		cancel()
	}()
	_, err = proc.Turn(ctx, []string{ProbeText})
	if !session.ProbeAnswered(err, ctx.Err() != nil) {
		s.log.Info("API probe: still unreachable", "err", err)
		return false
	}
	return true // the API answered, if with an error of the turn's own
}

func (s *Supervisor) apiChanged(up bool) {
	s.recordAPIChange(up)
	if up {
		s.log.Info("AI API is back: processing held messages", "outage_seconds", s.breaker.Stats().DownSeconds)
	} else {
		s.log.Warn("AI API unreachable: holding new turns and probing")
	}
}

// checkLoop runs the health check first after FirstCheckDelay, then every
// CheckInterval. Checks run one after another, never overlapping.
func (s *Supervisor) checkLoop(ctx context.Context) {
	next := s.cfg.FirstCheckDelay
	for {
		t := s.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		s.lastTick.Store(s.clock.Now().UnixNano())
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
		s.Check(cctx)
		cancel()
		next = s.cfg.CheckInterval
	}
}

// CheckResult is what one health check did.
type CheckResult struct {
	Sessions  int
	Unhealthy map[string]string // chat → reason, restart requested
	Reaped    []string
	Stranded  []string // chats whose waiting messages had nothing scheduled
	Took      time.Duration
}

// Check runs one health check: every session gets a verdict; unhealthy ones
// are restarted and idle ones reaped by their own goroutines, so the check
// never blocks on a session. A panic inside is caught and counted.
func (s *Supervisor) Check(ctx context.Context) (res CheckResult) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.metrics.Panics.Inc()
			s.log.Error("health check panic", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	now := s.clock.Now()
	queues, err := s.queues(ctx)
	if err != nil {
		s.log.Error("health check: read queue", "err", err)
		return res
	}
	_ = s.storeIntact()
	apiDown := !s.breaker.Up()
	res.Unhealthy = map[string]string{}
	rules := s.cfg.Rules
	for _, ss := range s.all() {
		if ctx.Err() != nil {
			s.log.Warn("health check timed out", "checked", res.Sessions)
			break
		}
		res.Sessions++
		snap := ss.Snapshot()
		q := queues[snap.ChatID]
		v := rules.Verdict(snap, q, now, apiDown)
		if !v.Healthy {
			if session.RestartNow(v, snap) {
				res.Unhealthy[snap.ChatID] = v.Reason
				ss.Restart(v, snap.Gen)
			}
			continue
		}
		// The safety net: waiting messages at a session with nothing in
		// flight are handed over now. Every path that leaves messages
		// waiting is meant to schedule their hand-over itself, so one
		// found stranded is a bug, logged as such.
		if q.Depth > 0 && !snap.Busy {
			if rules.Stranded(snap, q, now, apiDown) {
				res.Stranded = append(res.Stranded, snap.ChatID)
				s.metrics.Stranded.Inc()
				s.log.Error("health check: messages were waiting with nothing scheduled to hand them over; handing them over now",
					"chat", snap.ChatID, "waiting", q.Depth, "state", string(snap.State), "since", q.Oldest)
			}
			ss.Notify()
		}
		if rules.Reapable(snap, q, now) {
			res.Reaped = append(res.Reaped, snap.ChatID)
			ss.Reap(func(cur session.Snapshot) bool { return rules.StillReapable(cur, s.clock.Now()) })
		}
	}
	s.checkResources(now)
	s.kickHibernation() // the safety net of the live cap
	if s.cfg.RetainDone > 0 {
		if n, err := s.store.PurgeDone(ctx, now.Add(-s.cfg.RetainDone), 20000); err != nil {
			s.log.Error("purge answered messages", "err", err)
		} else if n > 0 {
			s.log.Info("purged answered messages past their retention", "count", n, "retain_done", s.cfg.RetainDone)
		}
	}
	s.purgeEvents(ctx, now)
	res.Took = time.Since(start)
	s.metrics.Checks.Inc()
	s.metrics.CheckDuration.Observe(res.Took.Seconds())
	s.log.Info("health check", "sessions", res.Sessions, "unhealthy", len(res.Unhealthy),
		"reaped", len(res.Reaped), "api_up", !apiDown, "took", res.Took)
	for chat, why := range res.Unhealthy {
		s.log.Warn("unhealthy session: restarting", "chat", chat, "reason", why)
	}
	return res
}

func (s *Supervisor) queues(ctx context.Context) (map[string]session.Queue, error) {
	stats, err := s.store.PendingStats(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]session.Queue, len(stats))
	for chat, st := range stats {
		out[chat] = session.Queue{Depth: st.Count, Oldest: st.Oldest}
	}
	return out, nil
}

// observer turns session events into lifecycle log lines and metrics.
type observer struct{ s *Supervisor }

// daemonError is one resource error of the daemon's own.
type daemonError struct {
	at     time.Time
	reason string
}

// DaemonErrorWindow is how long a resource error of the daemon's own keeps
// its health degraded after the last one.
const DaemonErrorWindow = time.Minute

// daemonError returns the daemon's resource error of the last
// DaemonErrorWindow, or "".
func (s *Supervisor) daemonError() string {
	e := s.daemonErr.Load()
	if e == nil || s.clock.Now().Sub(e.at) > DaemonErrorWindow {
		return ""
	}
	return e.reason
}

func (o observer) Event(ev lifecycle.Event) {
	if ev.Kind == lifecycle.DaemonError {
		if o.s.daemonErr.Load() == nil || o.s.daemonError() == "" {
			o.s.log.Error("the daemon is out of a resource of its own; sessions retry without spending their restarts", "chat", ev.Chat, "err", ev.Detail)
		}
		o.s.daemonErr.Store(&daemonError{at: o.s.clock.Now(), reason: ev.Detail})
	}
	o.s.emit(ev)
	o.s.metrics.ObserveLifecycle(ev)
}

// emit writes a lifecycle event's line in the lifecycle log. A session's
// events are also counted (observer.Event); the daemon's own (an
// operator's retry or drop, a lost store, an orphan killed) have counters
// of their own. An event's feed form, if any, is written by the store with
// the change it reports (see lifecycle.Event.Feed).
func (s *Supervisor) emit(ev lifecycle.Event) {
	if el, ok := s.logs.(EventLog); ok {
		el.Event(ev)
	} else {
		s.logs.Lifecycle(ev.Kind.String(), ev.Chat, ev.Detail)
	}
}

func (o observer) Turn(chat string, d time.Duration, n int, err error) {
	outcome := "ok"
	if err != nil {
		outcome = agent.KindOf(err).String()
	} else {
		o.s.metrics.Done.Add(float64(n))
	}
	o.s.metrics.ObserveTurn(d, outcome)
}

// --- status ---

// Status is the object of `dispatch status --json` and GET /v1/status.
type Status struct {
	Daemon   DaemonStatus    `json:"daemon"`
	Sessions []SessionStatus `json:"sessions"`
	Queue    QueueStatus     `json:"queue"`
	// Webhooks are the webhook endpoints with their delivery state (the
	// daemon fills it in; never a secret).
	Webhooks []webhook.EndpointStatus `json:"webhooks,omitempty"`
}

type DaemonStatus struct {
	PID           int     `json:"pid"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	API           string  `json:"api"`
	APIHeld       int     `json:"api_held"`
	Outages       int     `json:"api_outages"`
	OutageSeconds float64 `json:"api_outage_seconds"`
	Healthy       bool    `json:"healthy"`
	// ResourceError is the daemon's own resource error (out of file
	// descriptors, memory or processes) of the last minute: not any
	// session's fault, and retried.
	ResourceError string `json:"resource_error,omitempty"`
	// StoreLost says the database file was removed, replaced or truncated
	// under the daemon: nothing is accepted until it is restarted.
	StoreLost string `json:"store_lost,omitempty"`
}

type SessionStatus struct {
	ChatID       string  `json:"chat_id"`
	State        string  `json:"state"`
	Alive        bool    `json:"alive"`
	Healthy      bool    `json:"healthy"`
	HealthReason string  `json:"health_reason"`
	Busy         bool    `json:"busy"`
	ErrorCount   int     `json:"error_count"`
	IdleSeconds  float64 `json:"idle_seconds"`
	QueueDepth   int     `json:"queue_depth"`
	Turns        int64   `json:"turns"`
	Restarts     int64   `json:"restarts"`
	SessionID    string  `json:"session_id"`
	Exempt       bool    `json:"exempt"`
	ExemptFlag   bool    `json:"exempt_flag"`
	Pid          int     `json:"pid,omitempty"`
	LastActivity string  `json:"last_activity"`
	// StopReason says why a stopped session has no agent: idle, killed,
	// hibernated.
	StopReason string `json:"stop_reason,omitempty"`
	// RSSBytes is a live agent's resident memory, its whole process group
	// counted, read when status is asked.
	RSSBytes uint64 `json:"rss_bytes,omitempty"`
	// StoreError is the store write the session is retrying, while it
	// fails (a full disk, an I/O error).
	StoreError string `json:"store_error,omitempty"`
}

type QueueStatus struct {
	Pending  int `json:"pending"`
	Inflight int `json:"inflight"`
	Dead     int `json:"dead"`
	Done     int `json:"done"`
}

// Status computes the daemon's status now; every verdict is fresh.
func (s *Supervisor) Status(ctx context.Context) (Status, error) {
	now := s.clock.Now()
	// With the database lost under it, reads may fail too: the status then
	// still says so, without queue figures.
	lost := s.storeIntact() != nil && s.storeLost.Load() != nil
	queues, err := s.queues(ctx)
	if err != nil && !lost {
		return Status{}, err
	}
	counts, err := s.store.Counts(ctx)
	if err != nil && !lost {
		return Status{}, err
	}
	bs := s.breaker.Stats()
	api := "up"
	if !bs.Up {
		api = "down"
	}
	st := Status{
		Daemon: DaemonStatus{
			PID: os.Getpid(), Version: s.cfg.Version, UptimeSeconds: now.Sub(s.started).Seconds(),
			API: api, APIHeld: bs.Held, Outages: bs.Outages, OutageSeconds: bs.DownSeconds,
			Healthy: s.Healthy() && s.daemonError() == "" && s.storeLost.Load() == nil, ResourceError: s.daemonError(),
		},
		Queue:    QueueStatus{Pending: counts.Pending, Inflight: counts.Inflight, Dead: counts.Dead, Done: counts.Done},
		Sessions: []SessionStatus{},
	}
	rules := s.cfg.Rules
	snaps := make([]session.Snapshot, 0, len(st.Sessions))
	pids := map[int]bool{}
	for _, ss := range s.all() {
		snap := ss.Snapshot()
		snaps = append(snaps, snap)
		if snap.Pid > 0 && snap.ProcUp {
			pids[snap.Pid] = true
		}
	}
	rss := agentRSS(pids)
	for _, snap := range snaps {
		q := queues[snap.ChatID]
		v := rules.Verdict(snap, q, now, !bs.Up)
		st.Sessions = append(st.Sessions, SessionStatus{
			ChatID:       snap.ChatID,
			State:        string(snap.State),
			Alive:        rules.Alive(snap),
			Healthy:      v.Healthy,
			HealthReason: v.Reason,
			Busy:         snap.Busy,
			ErrorCount:   snap.ErrorCount,
			IdleSeconds:  now.Sub(snap.LastActivity).Seconds(),
			QueueDepth:   q.Depth,
			Turns:        snap.Turns,
			Restarts:     snap.Restarts,
			SessionID:    snap.SessionID,
			Exempt:       rules.Exempt(snap.ChatID, snap.ExemptFlag),
			ExemptFlag:   snap.ExemptFlag,
			Pid:          snap.Pid,
			LastActivity: snap.LastActivity.UTC().Format(time.RFC3339),
			StopReason:   stopReason(snap),
			StoreError:   snap.StoreError,
			RSSBytes:     rss[snap.Pid],
		})
	}
	if e := s.storeLost.Load(); e != nil {
		st.Daemon.StoreLost = (*e).Error()
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].ChatID < st.Sessions[j].ChatID })
	return st, nil
}

// --- metrics.Source ---

func (s *Supervisor) SessionStates() map[string]int {
	out := map[string]int{}
	for _, ss := range s.all() {
		out[string(ss.Snapshot().State)]++
	}
	return out
}

func (s *Supervisor) LiveProcesses() int {
	n := 0
	for _, ss := range s.all() {
		if ss.Snapshot().ProcUp {
			n++
		}
	}
	return n
}

func (s *Supervisor) MessageStates() map[string]int {
	c, err := s.store.Counts(context.Background())
	if err != nil {
		return nil
	}
	return map[string]int{"pending": c.Pending, "inflight": c.Inflight, "done": c.Done, "dead": c.Dead}
}

func (s *Supervisor) APIUp() bool            { return s.breaker.Up() }
func (s *Supervisor) OutageSeconds() float64 { return s.breaker.Stats().DownSeconds }

func newID() string { return uuid.NewString() }

func stopReason(snap session.Snapshot) string {
	if snap.State != session.Stopped {
		return ""
	}
	return string(snap.StopReason)
}

// storeIntact runs the store's integrity probe (is the database file at
// its path still the one opened, its WAL intact). The first failure is an
// alert: nothing is accepted from then on (503), and an operator must
// restore the state directory and restart the daemon.
func (s *Supervisor) storeIntact() error {
	err := s.store.CheckIdentity()
	if err != nil && errors.Is(err, store.ErrLost) && s.storeLost.CompareAndSwap(nil, &err) {
		s.log.Error("ALERT: the database was removed, replaced or truncated under the daemon: refusing to accept messages; "+
			"stop the daemon, restore the state directory from a backup (or move it aside), start it again; run dispatch doctor",
			"err", err)
		s.emit(lifecycle.Event{Kind: lifecycle.StoreLost, Cause: lifecycle.Store, Detail: err.Error()})
	}
	return err
}

// ChatHold says whether chat's waiting messages are held with no automatic
// way forward: its session failed (an operator restart is needed). It is
// how a sender waiting for a reply learns that none is coming.
func (s *Supervisor) ChatHold(chat string) (held bool, reason string) {
	ss, ok := s.lookup(chat)
	if !ok {
		return false, ""
	}
	snap := ss.Snapshot()
	if snap.State == session.Failed {
		return true, "session failed: " + snap.FailReason
	}
	return false, ""
}

// Message returns one stored message.
func (s *Supervisor) Message(ctx context.Context, id string) (store.Message, error) {
	return s.store.Get(ctx, id)
}

// Messages lists stored messages.
func (s *Supervisor) Messages(ctx context.Context, f store.Filter) ([]store.Message, error) {
	return s.store.List(ctx, f)
}

// Ready reports whether the daemon can take messages: not shutting down,
// and the store takes a durable write.
func (s *Supervisor) Ready(ctx context.Context) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrClosing
	}
	if err := s.storeIntact(); err != nil {
		return err
	}
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("store not writable: %w", err)
	}
	return nil
}
