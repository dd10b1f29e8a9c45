// Package supervisor owns every chat's session: it creates them lazily,
// routes accepted messages to them, runs the periodic health check and idle
// reaping, recovers after a restart of the daemon, and shuts
// everything down in order.
//
// Files by role: supervisor.go is the registry and routing (New, Start,
// Submit, the operator commands, Shutdown); check.go the health check loop;
// probe.go the outage probe; observer.go turns session events into log
// lines and metrics; status.go the status and metrics views; events.go the
// api_down/api_up feed events; livecap.go, slots.go and memory.go the live
// cap and the memory watch; resources.go and agents.go the resource checks
// and the agents' process ids.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
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
	// Owner, with several nodes on one database, says which chats this
	// node holds the lease of (cluster.go); nil: one node, every chat.
	Owner Owner
	// PermissionTimeout is agent.permission_timeout: how long a
	// permission request waits for a person (0: the default).
	PermissionTimeout time.Duration
}

// Logs is where the supervisor writes: the manager log, the lifecycle log
// (typed lifecycle events, as logging.Logs.Event writes them) and one log
// per session.
type Logs interface {
	Manager() *slog.Logger
	Event(ev lifecycle.Event, attrs ...slog.Attr)
	Session(chat string) *slog.Logger
}

// ErrUnknownChat is returned for operations on a chat that has no session.
var ErrUnknownChat = errors.New("unknown chat")

// Supervisor routes messages to sessions and keeps them healthy.
type Supervisor struct {
	cfg     Config
	store   store.Backend
	clock   clock.Clock
	logs    Logs
	log     *slog.Logger
	breaker *breaker.Breaker
	metrics *metrics.Metrics
	deps    *session.Deps
	perms   *permission.Broker
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
	// intact shares the identity probe among accepts that arrive together.
	intact sharedProbe
	// storeFull is the last accept refused for lack of space (cleared by
	// one that succeeds).
	storeFull atomic.Pointer[daemonError]

	capacity                    // the live cap and the memory watch (livecap.go, memory.go)
	apiEvents chan events.Event // api_down / api_up, written in order (events.go)

	drops sync.WaitGroup // sessions stopping after their lease was lost (cluster.go)

	lastTick atomic.Int64 // unix nanos of the check loop's last tick
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New builds a supervisor; Start recovers state and starts its loops.
func New(cfg Config, st store.Backend, ag agent.Agent, clk clock.Clock, logs Logs) *Supervisor {
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
		// A probe as silent as a stuck turn is unanswered. A probe is
		// always a new agent's first turn, so it gets a first turn's time
		// (a cold start of the CLI on a loaded machine takes seconds).
		ProbeTimeout: cfg.Rules.FirstTurnStuckTimeout,
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
		Progress:    st,
	}
	s.perms = permission.NewBroker(st, clk, cfg.PermissionTimeout, newID)
	s.deps.Asker = s.perms.Asker
	s.initCapacity()
	s.apiEvents = make(chan events.Event, 64)
	return s
}

// Permissions is the broker that asks people for the agents (the API
// answers through it).
func (s *Supervisor) Permissions() *permission.Broker { return s.perms }

// closeAsked closes chat's open permission requests ("" every chat's) and
// drops its progress events: they were asked and reported by an agent
// that is gone (the daemon restarted, or another node owned the chat).
// The turn that asked is retried under the usual rules and asks again.
func (s *Supervisor) closeAsked(ctx context.Context, chat string) error {
	n, err := s.perms.ExpireChat(ctx, chat, permission.ReasonRestart)
	if err != nil {
		return fmt.Errorf("expire open permission requests: %w", err)
	}
	if n > 0 {
		s.log.Warn("permission requests open at the last shutdown were closed as expired; their turns ask again", "count", n, "chat", chat)
	}
	if _, err := s.store.DropProgress(ctx, chat); err != nil {
		return fmt.Errorf("drop progress of ended turns: %w", err)
	}
	return nil
}

// Metrics exposes the metrics registry for the HTTP API.
func (s *Supervisor) Metrics() *metrics.Metrics { return s.metrics }

// Start recovers from the store — messages in flight when the last daemon
// died go back to pending, sessions that were live start again with resume,
// every chat with pending messages is woken — and starts the health loop.
func (s *Supervisor) Start(ctx context.Context) error {
	if s.cfg.Owner != nil {
		return s.startClustered()
	}
	n, err := s.store.ResetInflight(ctx)
	if err != nil {
		return fmt.Errorf("recover in-flight messages: %w", err)
	}
	if n > 0 {
		s.log.Warn("messages in flight at the last shutdown were put back in line", "count", n)
	}
	if err := s.closeAsked(ctx, ""); err != nil {
		return err
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
	s.startLoops()
	return nil
}

// startLoops starts the supervisor's own loops.
func (s *Supervisor) startLoops() {
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.lastTick.Store(s.clock.Now().UnixNano())
	s.wg.Add(5)
	go func() { defer s.wg.Done(); s.breaker.Run(loopCtx) }()
	go func() { defer s.wg.Done(); s.checkLoop(loopCtx) }()
	go func() { defer s.wg.Done(); s.writeAPIEvents(loopCtx) }()
	go func() { defer s.wg.Done(); s.hibernationLoop(loopCtx) }()
	go func() { defer s.wg.Done(); s.memoryLoop(loopCtx) }()
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
	if s.closing || s.cfg.Owner != nil {
		return nil // with several nodes, a session is made when its lease is taken (Adopt)
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
	if err := s.intact.Do(s.storeIntact); err != nil {
		return "", false, err
	}
	got, dup, err := s.store.Accept(ctx, chat, text, clientID)
	s.noteAccept(err)
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
		return s.missing(ctx, chat)
	}
	return ss.Kill(ctx)
}

// Pause holds chat's messages until Resume.
func (s *Supervisor) Pause(ctx context.Context, chat string) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return s.missing(ctx, chat)
	}
	return ss.Pause(ctx)
}

// Resume lets a paused chat's messages go, in order.
func (s *Supervisor) Resume(ctx context.Context, chat string) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return s.missing(ctx, chat)
	}
	return ss.Resume(ctx)
}

// Restart restarts chat's session now (clean: without resume), clearing a
// failed state.
func (s *Supervisor) Restart(ctx context.Context, chat string, clean bool) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return s.missing(ctx, chat)
	}
	return ss.OperatorRestart(ctx, clean)
}

// StopTurn stops chat's turn in flight without retry (its person's
// /stop): its messages are answered "Stopped." and the conversation goes
// on. false: no turn was running.
func (s *Supervisor) StopTurn(ctx context.Context, chat string) (bool, error) {
	ss, ok := s.lookup(chat)
	if !ok {
		return false, s.missing(ctx, chat)
	}
	return ss.StopTurn(ctx)
}

// Exempt sets or clears chat's run-time idle exemption. Like every
// operation on a chat, it needs a chat that exists: a typo must not create
// a session.
func (s *Supervisor) Exempt(ctx context.Context, chat string, on bool) error {
	ss, ok := s.lookup(chat)
	if !ok {
		return s.missing(ctx, chat)
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
	s.drops.Wait()
	s.log.Info("supervisor stopped")
}

func newID() string { return uuid.NewString() }

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
