package claude

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Interrupting a turn. Checked on Claude Code 2.1.332 against the fake
// API, with a turn waiting on a slow answer: the stdin line
//
//	{"type":"control_request","request_id":"…","request":{"subtype":"interrupt"}}
//
// is answered at once with a control_response of subtype success (its
// response {"still_queued":[]}), then a user line "[Request interrupted
// by user]" and the turn's result line (subtype error_during_execution,
// is_error true). The process keeps running, and its next turn is
// answered in the same conversation. An interrupt with no turn running
// is answered the same way and ends nothing.

// Interrupt asks the CLI to end the turn in flight (agent.Interrupter).
// The turn then ends with the CLI's result for it.
func (p *Process) Interrupt(ctx context.Context) error {
	id := "dispatch-interrupt-" + uuid.NewString()
	line := []byte(`{"type":"control_request","request_id":"` + id + `","request":{"subtype":"interrupt"}}` + "\n")
	n, err := p.write(ctx, line)
	if err != nil {
		if n > 0 && n < len(line) {
			p.mu.Lock()
			p.broken = fmt.Errorf("an interrupt left a partial line on stdin; restart the agent")
			p.mu.Unlock()
		}
		return fmt.Errorf("claude: interrupt: %w", err)
	}
	return nil
}
