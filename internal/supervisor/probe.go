// The outage probe: while the API breaker (internal/breaker) is open it
// calls probe, which asks the API through a throwaway agent and judges the
// answer with session.ProbeAnswered.

package supervisor

import (
	"context"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/session"
)

// ProbeText is what an API-health probe asks the agent.
const ProbeText = "Reply with the single word OK."

// probe asks the API, through a throwaway agent conversation that is not
// saved, whether it answers again. Only an outage (or rejected credentials)
// keeps the breaker open; an agent that cannot even start, or ends before
// answering (whether or not it wrote anything), keeps it open too.
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
