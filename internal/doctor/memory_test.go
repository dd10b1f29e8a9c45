package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/config"
)

func TestCheckMemory(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	measured := func(per uint64, n int) func(context.Context, config.Config) (uint64, int, bool) {
		return func(context.Context, config.Config) (uint64, int, bool) { return per, n, n > 0 }
	}
	tests := []struct {
		name    string
		kind    string
		maxLive int
		total   uint64
		per     uint64
		live    int
		status  Status
		detail  string
		hint    string
	}{
		{"fits", "claude", 20, 16 * gib, 200 * mib, 3, Pass, "20 live agents × 200.0 MiB (measured: the largest of 3 live agents)", ""},
		{"over 80 %", "claude", 20, 4 * gib, 200 * mib, 3, Warn, "= 3.9 GiB of 4.0 GiB (98%)", "lower sessions.max_live to 16 or less"},
		{"exactly 80 % passes", "claude", 16, 4 * gib, 4 * gib / 20, 1, Pass, "(80%)", ""},
		{"estimate without a daemon", "claude", 20, 4 * gib, 0, 0, Warn, "estimated: no running daemon", "lower sessions.max_live to 10 or less"},
		{"no cap", "claude", 0, 8 * gib, 300 * mib, 2, Warn, "sessions.max_live is 0 (no cap)", "set sessions.max_live, e.g. 21"},
		{"memory unknown", "claude", 20, 0, 300 * mib, 2, Info, "machine memory unknown", ""},
		{"echo has no agents", "echo", 20, 1 * gib, 0, 0, Pass, "runs inside the daemon", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Agent.Kind = tt.kind
			cfg.Sessions.MaxLive = tt.maxLive
			r := CheckMemory(context.Background(), cfg, Env{
				MemTotal: func() uint64 { return tt.total },
				AgentRSS: measured(tt.per, tt.live),
			})
			if r.Status != tt.status || !strings.Contains(r.Detail, tt.detail) || !strings.Contains(r.Hint, tt.hint) {
				t.Fatalf("CheckMemory = %s %q hint %q; want %s, detail with %q, hint with %q",
					r.Status, r.Detail, r.Hint, tt.status, tt.detail, tt.hint)
			}
		})
	}
}
