// Status and metrics views: GET /v1/status (Status), the figures
// Prometheus reads at scrape time (metrics.Source) and ChatHold.

package supervisor

import (
	"context"
	"os"
	"sort"
	"time"

	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// The status shapes (GET /v1/status, `dispatch status --json`) are the
// wire package's; the supervisor fills them in.
type (
	Status        = wire.Status
	DaemonStatus  = wire.DaemonStatus
	SessionStatus = wire.SessionStatus
	QueueStatus   = wire.QueueStatus
)

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
	if full := s.storeFullError(snaps); full != "" {
		st.Daemon.StoreFull, st.Daemon.Healthy = full, false
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].ChatID < st.Sessions[j].ChatID })
	return st, nil
}

// RemoteSession is the status of a session this node does not run, from
// its saved record and its chat's owner ("" for none), by the same rules
// as the local ones (session.Rules.Remote).
func (s *Supervisor) RemoteSession(r store.SessionRecord, owner string, depth int) SessionStatus {
	v := s.cfg.Rules.Remote(session.Remote{
		ChatID: r.ChatID, Owner: owner, Live: r.Live, Failed: r.Failed, Paused: r.Paused,
		Flagged: r.Exempt, FailReason: r.FailReason,
	})
	return SessionStatus{
		ChatID: r.ChatID, State: string(v.State), Alive: v.Alive, Healthy: v.Healthy, HealthReason: v.Reason,
		IdleSeconds: s.clock.Now().Sub(r.LastActivity).Seconds(), QueueDepth: depth,
		Turns: r.Turns, Restarts: r.Restarts, SessionID: r.SessionID, Exempt: v.Exempt, ExemptFlag: r.Exempt,
		LastActivity: r.LastActivity.UTC().Format(time.RFC3339), Owner: owner,
	}
}

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

func (s *Supervisor) APIUp() bool { return s.breaker.Up() }

func (s *Supervisor) OutageSeconds() float64 { return s.breaker.Stats().DownSeconds }

func stopReason(snap session.Snapshot) string {
	if snap.State != session.Stopped {
		return ""
	}
	return string(snap.StopReason)
}

// ChatPaused says whether an operator paused chat (its messages wait for
// Resume).
func (s *Supervisor) ChatPaused(chat string) bool {
	ss, ok := s.lookup(chat)
	return ok && ss.Snapshot().State == session.Paused
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
