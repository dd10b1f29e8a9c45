package doctor

import (
	"context"
	"fmt"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/resources"
)

// estimatedAgentRSS is the memory assumed per Claude Code agent when no
// running daemon can tell the measured figure: the CLI holds about 190 MB
// idle and peaks near 310 MB during a turn.
const estimatedAgentRSS = 310 << 20

// memoryBudget is the share of the machine's memory the live agents may
// take before the doctor warns.
const memoryBudget = 0.80

// CheckMemory compares what the live agents may take — sessions.max_live
// agents of the per-agent memory measured by the running daemon (its
// largest live agent), or of an estimate when no daemon measures one —
// with the machine's memory, and warns past 80 %.
func CheckMemory(ctx context.Context, cfg config.Config, env Env) Result {
	r := Result{Name: "memory"}
	if cfg.Agent.Kind == "echo" {
		r.Status = Pass
		r.Detail = "the echo agent runs inside the daemon: no agent processes"
		return r
	}
	total := uint64(0)
	if env.MemTotal != nil {
		total = env.MemTotal()
	} else {
		total = resources.MemTotal("")
	}
	per, live, measured := uint64(0), 0, false
	if env.AgentRSS != nil {
		per, live, measured = env.AgentRSS(ctx, cfg)
	} else {
		per, live, measured = daemonAgentRSS(ctx, cfg, env)
	}
	source := fmt.Sprintf("measured: the largest of %d live agents", live)
	if !measured || per == 0 {
		per = estimatedAgentRSS
		source = "estimated: no running daemon with a live agent to measure"
	}
	if total == 0 {
		r.Status = Info
		r.Detail = fmt.Sprintf("machine memory unknown; %s per agent (%s)", bytesText(per), source)
		return r
	}
	max := cfg.Sessions.MaxLive
	if max == 0 {
		r.Status = Warn
		r.Detail = fmt.Sprintf("sessions.max_live is 0 (no cap): every active chat holds an agent of about %s (%s); the machine has %s",
			bytesText(per), source, bytesText(total))
		r.Hint = fmt.Sprintf("set sessions.max_live, e.g. %d, so that a busy day cannot exhaust memory", fit(total, per))
		return r
	}
	need := uint64(max) * per
	r.Detail = fmt.Sprintf("%d live agents × %s (%s) = %s of %s (%.0f%%)",
		max, bytesText(per), source, bytesText(need), bytesText(total), 100*float64(need)/float64(total))
	if float64(need) > memoryBudget*float64(total) {
		r.Status = Warn
		r.Hint = fmt.Sprintf("at the cap the agents would take more than %.0f%% of the machine's memory: "+
			"lower sessions.max_live to %d or less (chats beyond it are hibernated and resume on their next message)",
			100*memoryBudget, fit(total, per))
		return r
	}
	r.Status = Pass
	return r
}

// fit is how many agents of per bytes fit in the memory budget (at least 1).
func fit(total, per uint64) int {
	return max(1, int(memoryBudget*float64(total)/float64(per)))
}

// daemonAgentRSS asks a running daemon for its live agents' memory: the
// largest rss_bytes and how many live agents reported one.
func daemonAgentRSS(ctx context.Context, cfg config.Config, env Env) (uint64, int, bool) {
	env = env.withDefaults()
	c := client.ForSocket(cfg.SocketPath(), env.SocketTimeout)
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return 0, 0, false
	}
	var mx uint64
	n := 0
	for _, s := range st.Sessions {
		if s.RSSBytes > 0 {
			n++
			mx = max(mx, s.RSSBytes)
		}
	}
	return mx, n, n > 0
}
