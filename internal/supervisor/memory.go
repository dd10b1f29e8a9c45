package supervisor

import (
	"context"

	"github.com/dispatchd/dispatch/internal/resources"
	"github.com/dispatchd/dispatch/internal/session"
)

// memoryLoop samples every live agent's resident memory every
// MemoryInterval, on its own timer: a leaking agent can grow by hundreds
// of MB a minute, far too fast for the health check.
func (s *Supervisor) memoryLoop(ctx context.Context) {
	if s.cfg.MemoryInterval <= 0 {
		return
	}
	for {
		t := s.clock.NewTimer(s.cfg.MemoryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		s.sampleMemory()
	}
}

// sampleMemory reads the resident memory of every live agent's process
// group, keeps the figures for status and metrics, and tells each agent
// over the limit what the memory rule calls for.
func (s *Supervisor) sampleMemory() {
	defer func() {
		if r := recover(); r != nil {
			s.metrics.Panics.Inc()
			s.log.Error("memory sample panic", "panic", r)
		}
	}()
	type live struct {
		ss   *session.Session
		snap session.Snapshot
	}
	var agents []live
	pgids := map[int]bool{}
	for _, ss := range s.all() {
		if snap := ss.Snapshot(); snap.Pid > 0 && snap.ProcUp {
			agents = append(agents, live{ss, snap})
			pgids[snap.Pid] = true
		}
	}
	got, err := resources.GroupRSS("", pgids)
	if err != nil {
		s.log.Error("memory sample", "err", err)
		return
	}
	byChat := make(map[string]uint64, len(agents))
	s.memMu.Lock()
	warned := s.memWarned
	s.memMu.Unlock()
	nowWarned := map[string]memWarning{}
	var sum, mx uint64
	rules := s.cfg.Rules
	for _, a := range agents {
		rss, ok := got[a.snap.Pid]
		if !ok {
			continue // it ended meanwhile
		}
		byChat[a.snap.ChatID] = rss
		sum += rss
		mx = max(mx, rss)
		if act := rules.Memory(rss); act != session.MemoryOK {
			// One line per agent and action, not one per sample.
			if w := warned[a.snap.ChatID]; w.gen != a.snap.Gen || w.act != act {
				s.log.Warn("agent over its memory limit", "chat", a.snap.ChatID, "pid", a.snap.Pid,
					"rss_bytes", rss, "limit_bytes", rules.MaxAgentRSS, "action", act.String(), "busy", a.snap.Busy)
			}
			nowWarned[a.snap.ChatID] = memWarning{a.snap.Gen, act}
			a.ss.Memory(rss, act, a.snap.Gen)
		}
	}
	s.memMu.Lock()
	s.rss, s.rssSum, s.rssMax, s.memWarned = byChat, sum, mx, nowWarned
	s.memMu.Unlock()
}

// memWarning is an agent generation warned about, and for which action.
type memWarning struct {
	gen uint64
	act session.MemoryAction
}

// AgentRSS is the live agents' resident memory at the last sample: the sum
// and the largest.
func (s *Supervisor) AgentRSS() (sum, max uint64) {
	s.memMu.Lock()
	defer s.memMu.Unlock()
	return s.rssSum, s.rssMax
}

// agentRSS reads, now, the resident memory of the given agents' process
// groups (pid → bytes), for status.
func agentRSS(pids map[int]bool) map[int]uint64 {
	got, err := resources.GroupRSS("", pids)
	if err != nil {
		return nil
	}
	return got
}
