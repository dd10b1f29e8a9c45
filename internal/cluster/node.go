package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
)

// Host is what the node drives: the supervisor's sessions.
type Host interface {
	// Adopt is called once the node holds chat's lease: the session is
	// created from its saved record and woken. false: the host is
	// shutting down; the lease is given back.
	Adopt(chat string) bool
	// Wake tells an owned chat's session that messages may be waiting.
	Wake(chat string)
	// Drop is called when chat's lease is lost (taken over, or not
	// renewed in time): the session's agent stops at once, writing
	// nothing more.
	Drop(chat, why string)
}

// Config is one node's settings.
type Config struct {
	// Node is node.id; unique per node.
	Node string
	// TTL is node.lease_ttl: a lease not renewed for this long is free.
	TTL time.Duration
	// MaxLive is the node's sessions.max_live, used by placement.
	MaxLive int
	Clock   clock.Clock
	Log     *slog.Logger
	// Roles are the roles the node competes for (e.g. "webhooks");
	// OnRole is told when this node gains or loses one.
	Roles  []string
	OnRole func(name string, held bool)
	// OnDeadline, when set, is told after every renewal and every lease
	// taken until when (by the node's clock) the node's agents may run
	// should it do nothing more: the agent watchdog's deadline. It comes
	// after the moment the node itself stops a lease's agent (so that a
	// node that runs stops them first) and before any lease can expire.
	OnDeadline func(until time.Time)
}

// RoleWebhooks is the role of the node that delivers webhooks.
const RoleWebhooks = "webhooks"

// RoleSchedules is the role of the node that fires schedules.
const RoleSchedules = "schedules"

// Stats are the node's counters (metrics).
type Stats struct {
	Held       int
	Takeovers  uint64 // leases taken from another node (or an earlier process)
	LeasesLost uint64 // leases lost: taken over, or not renewed in time
	Acquired   uint64
}

// lease is one chat's lease as this node holds it.
type lease struct {
	token int64
	// until is when the node stops counting on the lease (by its own
	// clock): the moment the renewal that set it was sent, plus the ttl,
	// minus a margin. Past it the chat's session is stopped, renewed or
	// not, because another node may take the chat over from then on.
	until time.Time
}

// Manager is this node's part of the cluster.
type Manager struct {
	cfg Config
	pg  *postgres.DB
	db  postgres.Leases
	clk clock.Clock
	log *slog.Logger
	inc string

	mu   sync.Mutex
	held map[string]lease
	// renewed is the until of the last successful renewal.
	renewed time.Time
	live    []Node // the live nodes at the last look
	roles   map[string]bool

	wakes chan string
	host  Host

	takeovers, lost, acquiredN atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// claim gives back the node id's advisory lock (Claim); m.mu.
	claim func(context.Context)
}

// New makes the node's manager on the shared database.
func New(pg *postgres.DB, cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Manager{
		cfg:   cfg,
		pg:    pg,
		db:    pg.Leases(cfg.Node, cfg.TTL),
		clk:   cfg.Clock,
		log:   cfg.Log,
		inc:   uuid.NewString(),
		held:  map[string]lease{},
		roles: map[string]bool{},
		wakes: make(chan string, 1024),
	}
}

// NodeID is this node's id.
func (m *Manager) NodeID() string { return m.cfg.Node }

// renewEvery is how often leases and the heartbeat are renewed: three
// times per ttl, so that one or two failed renewals lose nothing.
func (m *Manager) renewEvery() time.Duration { return m.cfg.TTL / 3 }

// margin is how long before a lease's end (by this node's clock) the node
// stops counting on it.
func (m *Manager) margin() time.Duration { return m.cfg.TTL / 5 }

// tick is the loop's period: the scan for unowned chats (a dead node's,
// or ones whose wake-up was missed) and the check of lease deadlines.
func (m *Manager) tick() time.Duration { return min(time.Second, m.cfg.TTL/5) }

// nextTick is how long the loop waits: a tick, or less when a lease's
// deadline comes first, so that its agent is stopped on time.
func (m *Manager) nextTick(now time.Time) time.Duration {
	d := m.tick()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.held {
		d = min(d, max(l.until.Sub(now), time.Millisecond))
	}
	return d
}

// watchdogDeadline is when the node's agents must be stopped should the
// node do nothing more: half a margin after the earliest of its leases'
// deadlines (the node's own stop comes first), still half a margin before
// that lease can expire. With no lease held, the last renewal's. m.mu is
// held.
func (m *Manager) watchdogDeadlineLocked() time.Time {
	until := m.renewed
	first := true
	for _, l := range m.held {
		if first || l.until.Before(until) {
			until, first = l.until, false
		}
	}
	return until.Add(m.margin() / 2)
}

// tellDeadline hands the watchdog deadline to OnDeadline.
func (m *Manager) tellDeadline() {
	if m.cfg.OnDeadline == nil {
		return
	}
	m.mu.Lock()
	until := m.watchdogDeadlineLocked()
	m.mu.Unlock()
	m.cfg.OnDeadline(until)
}

// token is this node's fencing token for chat; ok is false when the node
// holds no lease on it.
func (m *Manager) token(chat string) (token int64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[chat]
	return l.token, ok
}

var (
	_ store.Fence[*postgres.Tx] = (*Manager)(nil)
	_ store.Waker               = (*Manager)(nil)
)

// Hold is the store's fence: every write for a chat (a claim, a turn's
// outcome, a requeue, a failure, a session record, a reset event, a saved
// conversation) checks, inside its own transaction, that the chat's lease
// row still names this node with its token and has not expired (by the
// database's clock), and holds the row until commit. A takeover bumps the
// token with an UPDATE of that row, so it waits for such a write to
// commit, and every later write of the old owner fails with
// store.ErrFenced: a node that was paused or cut off never writes for a
// chat it lost.
func (m *Manager) Hold(ctx context.Context, tx *postgres.Tx, chats []string) error {
	for _, chat := range chats {
		token, ok := m.token(chat)
		if !ok {
			return fmt.Errorf("chat %q: %w", chat, store.ErrFenced)
		}
		held, err := tx.HoldLease(ctx, chat, m.cfg.Node, token)
		if err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("chat %q: %w", chat, store.ErrFenced)
		}
	}
	return nil
}

// Wake tells chat's owner, through NOTIFY, that a message was committed
// for it (the store calls it after an accept or a retry commits), unless
// this node owns the chat: the supervisor wakes its own sessions itself.
// A lost wake-up (the node died between the commit and the NOTIFY, or the
// owner's listener was reconnecting) is made up for by the owner's scan.
func (m *Manager) Wake(ctx context.Context, chat string) {
	if _, own := m.token(chat); own {
		return
	}
	_ = m.pg.NotifyWake(ctx, chat)
}

// Owns reports whether this node holds chat's lease now.
func (m *Manager) Owns(chat string) bool {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[chat]
	return ok && now.Before(l.until)
}

// Stats returns the node's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	n := len(m.held)
	m.mu.Unlock()
	return Stats{Held: n, Takeovers: m.takeovers.Load(), LeasesLost: m.lost.Load(), Acquired: m.acquiredN.Load()}
}

// NodeInfo is one node as status shows it.
type NodeInfo = postgres.NodeInfo

// liveNodes reads the live nodes, as placement sees them.
func (m *Manager) liveNodes(ctx context.Context) ([]Node, error) {
	rows, err := m.db.Live(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Node, len(rows))
	for i, r := range rows {
		out[i] = Node{ID: r.ID, MaxLive: r.MaxLive, Owned: r.Owned}
	}
	return out, nil
}

// Nodes returns every node the database knows, for status.
func (m *Manager) Nodes(ctx context.Context) ([]NodeInfo, error) { return m.db.Nodes(ctx) }

// Owners returns each chat's owner node (valid leases), for status.
func (m *Manager) Owners(ctx context.Context) (map[string]string, error) { return m.db.Owners(ctx) }

// Start waits until no other process runs under this node's id (a
// restarted node waits for its killed predecessor's heartbeat to age),
// records the first heartbeat and starts the loop and the listener.
func (m *Manager) Start(ctx context.Context, host Host) error {
	m.host = host
	var lastLeft time.Duration
	var lastAt time.Time
	for {
		other, left, err := m.db.OtherIncarnation(ctx, m.inc)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if !other {
			break
		}
		// A heartbeat that moved on since the last look is a live
		// process's (one that holds no claim: started before the
		// claim existed, or whose claim's connection broke).
		if now := m.clk.Now(); !lastAt.IsZero() && left > lastLeft-now.Sub(lastAt)+m.renewEvery()/2 {
			return fmt.Errorf("cluster: %w: %q (its heartbeat goes on)", ErrNodeIDInUse, m.cfg.Node)
		}
		lastLeft, lastAt = left, m.clk.Now()
		m.log.Warn("another process with this node.id has a live heartbeat: waiting for it to end (node ids must be unique)",
			"node", m.cfg.Node, "wait", left)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(left+100*time.Millisecond, m.cfg.TTL)):
		}
	}
	if err := m.db.Heartbeat(ctx, m.inc, m.cfg.MaxLive); err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	live, err := m.liveNodes(ctx)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	m.mu.Lock()
	m.live = live
	m.mu.Unlock()
	lctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go func() { defer m.wg.Done(); m.loop(lctx) }()
	go func() { defer m.wg.Done(); m.listenLoop(lctx) }()
	m.log.Info("cluster node started", "node", m.cfg.Node, "lease_ttl", m.cfg.TTL, "live_nodes", len(live))
	return nil
}

// Stop ends the loop, gives every lease and role back (another node takes
// the chats at once, not after the ttl) and marks the node stopped. Call
// it after the host's sessions are shut down.
func (m *Manager) Stop(ctx context.Context) {
	if m.cancel == nil {
		m.Unclaim(ctx)
		return
	}
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	held := make(map[string]int64, len(m.held))
	for c, l := range m.held {
		held[c] = l.token
	}
	m.held = map[string]lease{}
	roles := m.roles
	m.roles = map[string]bool{}
	m.mu.Unlock()
	if err := m.db.Release(ctx, held); err != nil {
		m.log.Warn("cluster: release leases at shutdown (they expire after the ttl)", "err", err)
	}
	for r, on := range roles {
		if on {
			_ = m.db.ReleaseRole(ctx, r)
			if m.cfg.OnRole != nil {
				m.cfg.OnRole(r, false)
			}
		}
	}
	_ = m.db.Stopped(ctx)
	m.Unclaim(ctx)
	m.log.Info("cluster node stopped", "node", m.cfg.Node, "released", len(held))
}

func (m *Manager) loop(ctx context.Context) {
	lastRenew := time.Time{}
	for {
		now := m.clk.Now()
		m.expire(now)
		if now.Sub(lastRenew) >= m.renewEvery() {
			if m.renew(ctx) {
				lastRenew = now
				m.rewake(ctx, now)
			}
		}
		m.scan(ctx)
		t := m.clk.NewTimer(m.nextTick(m.clk.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case chat := <-m.wakes:
			t.Stop()
			m.woken(ctx, chat)
			// drain what else came meanwhile, then go round
			for more := true; more; {
				select {
				case c := <-m.wakes:
					m.woken(ctx, c)
				default:
					more = false
				}
			}
		}
	}
}

// expire drops the leases whose deadline (by this node's clock) passed:
// renewals failed for most of a ttl, or the process was paused. Their
// sessions stop at once; the store's fence refuses their writes anyway.
func (m *Manager) expire(now time.Time) {
	var gone []string
	m.mu.Lock()
	for c, l := range m.held {
		if !now.Before(l.until) {
			gone = append(gone, c)
			delete(m.held, c)
		}
	}
	m.mu.Unlock()
	for _, c := range gone {
		m.lost.Add(1)
		m.log.Warn("lease not renewed in time: stopping the chat's agent", "chat", c)
		m.host.Drop(c, "lease expired")
	}
}

// renew records the heartbeat, renews the held leases and roles, and reads
// the live nodes. false: the database did not answer (leases keep their
// deadlines).
func (m *Manager) renew(ctx context.Context) bool {
	sent := m.clk.Now()
	rctx, cancel := context.WithTimeout(ctx, m.renewEvery())
	defer cancel()
	if err := m.db.Heartbeat(rctx, m.inc, m.cfg.MaxLive); err != nil {
		m.log.Warn("cluster: heartbeat failed", "err", err)
		return false
	}
	m.mu.Lock()
	held := make(map[string]int64, len(m.held))
	for c, l := range m.held {
		held[c] = l.token
	}
	m.mu.Unlock()
	kept, err := m.db.Renew(rctx, held)
	if err != nil {
		m.log.Warn("cluster: lease renewal failed", "err", err, "leases", len(held))
		return false
	}
	until := sent.Add(m.cfg.TTL - m.margin())
	var lost []string
	m.mu.Lock()
	m.renewed = until
	for c, tok := range held {
		l, ok := m.held[c]
		if !ok || l.token != tok {
			continue // dropped or re-taken meanwhile
		}
		if kept[c] {
			l.until = until
			m.held[c] = l
		} else {
			delete(m.held, c)
			lost = append(lost, c)
		}
	}
	m.mu.Unlock()
	m.tellDeadline()
	for _, c := range lost {
		m.lost.Add(1)
		m.log.Warn("lease taken over by another node: stopping the chat's agent", "chat", c)
		m.host.Drop(c, "lease taken over")
	}
	if live, err := m.liveNodes(rctx); err == nil {
		m.mu.Lock()
		m.live = live
		m.mu.Unlock()
	}
	for _, r := range m.cfg.Roles {
		on, err := m.db.TakeRole(rctx, r)
		if err != nil {
			on = false
		}
		m.mu.Lock()
		was := m.roles[r]
		m.roles[r] = on
		m.mu.Unlock()
		if on != was {
			m.log.Info("cluster role changed", "role", r, "held", on)
			if m.cfg.OnRole != nil {
				m.cfg.OnRole(r, on)
			}
		}
	}
	return true
}

// rewake wakes the owned chats with a message waiting for more than a
// renewal period: the safety net for a wake-up that was lost (the
// accepting node died between its commit and its NOTIFY, or this node's
// listener was reconnecting). Waking a session with nothing to do, or one
// that holds its messages on purpose, changes nothing.
func (m *Manager) rewake(ctx context.Context, now time.Time) {
	m.mu.Lock()
	chats := make([]string, 0, len(m.held))
	for c := range m.held {
		chats = append(chats, c)
	}
	m.mu.Unlock()
	if len(chats) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := m.db.Waiting(wctx, chats, now.Add(-m.renewEvery()).UnixNano())
	if err != nil {
		return
	}
	for _, c := range got {
		m.host.Wake(c)
	}
}

// mine reports whether placement puts chat on this node.
func (m *Manager) mine(chat string) bool {
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	self := false
	for _, n := range live {
		if n.ID == m.cfg.Node {
			self = true
		}
	}
	if !self {
		live = append(live, Node{ID: m.cfg.Node, MaxLive: m.cfg.MaxLive, Owned: len(m.held)})
	}
	return Place(chat, live) == m.cfg.Node
}

// scan takes the unowned chats placement gives this node: new chats whose
// wake-up was missed, and a dead node's chats once their leases expired.
func (m *Manager) scan(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	chats, err := m.db.Unowned(sctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cluster: scan for unowned chats", "err", err)
		}
		return
	}
	if len(chats) > 0 {
		// Fresh liveness: a dead node's leases expire with its heartbeat,
		// and placement must not still count it among the live.
		if live, err := m.liveNodes(sctx); err == nil {
			m.mu.Lock()
			m.live = live
			m.mu.Unlock()
		}
	}
	for _, c := range chats {
		if ctx.Err() != nil {
			return
		}
		if m.Owns(c) || !m.mine(c) {
			continue
		}
		m.take(sctx, c)
	}
}

// woken handles a chat's wake-up: the owner's session is woken; an
// unowned chat placed here is taken.
func (m *Manager) woken(ctx context.Context, chat string) {
	if m.Owns(chat) {
		m.host.Wake(chat)
		return
	}
	if !m.mine(chat) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if valid, err := m.db.LeaseValid(wctx, chat); err != nil || valid {
		return
	}
	m.take(wctx, chat)
}

// take acquires chat's lease and hands the chat to the host.
func (m *Manager) take(ctx context.Context, chat string) {
	sent := m.clk.Now()
	a, ok, err := m.db.Acquire(ctx, chat, sent)
	if err != nil {
		m.log.Warn("cluster: take chat", "chat", chat, "err", err)
		return
	}
	if !ok {
		return
	}
	m.mu.Lock()
	m.held[chat] = lease{token: a.Token, until: sent.Add(m.cfg.TTL - m.margin())}
	m.mu.Unlock()
	m.tellDeadline() // before the chat's agent starts
	m.acquiredN.Add(1)
	if a.Prev != "" {
		m.takeovers.Add(1)
		m.log.Info("took over chat", "chat", chat, "from", a.Prev, "token", a.Token, "requeued_in_flight", a.Reset)
	} else {
		m.log.Debug("took chat", "chat", chat, "token", a.Token)
	}
	if !m.host.Adopt(chat) {
		m.mu.Lock()
		delete(m.held, chat)
		m.mu.Unlock()
		_ = m.db.Release(context.WithoutCancel(ctx), map[string]int64{chat: a.Token})
	}
}

// listenLoop keeps a connection LISTENing for wake-ups and hands them to
// the loop. Missed ones (while reconnecting) are made up for by the scan
// and by the supervisor's health check.
func (m *Manager) listenLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := m.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("cluster: wake-up listener lost its connection; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (m *Manager) listenOnce(ctx context.Context) error {
	return m.pg.ListenWakes(ctx, func(chat string) {
		if m.Owns(chat) {
			m.host.Wake(chat) // the hot path: no round through the loop
			return
		}
		select {
		case m.wakes <- chat:
		default: // full: the scan picks it up
		}
	})
}
