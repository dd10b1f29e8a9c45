// The health check loop: every check_interval each session gets a verdict
// (session.Rules.Verdict); unhealthy ones are restarted, idle ones reaped,
// stranded messages handed over, resources checked and old rows purged.

package supervisor

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/dispatchd/dispatch/internal/session"
)

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
