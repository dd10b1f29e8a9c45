package session

import (
	"context"
	"fmt"
	"strings"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/lifecycle"
)

// reset records that the chat's conversation starts over (the agent lost
// its earlier context), durably as a session_reset event, so a front-end
// can tell the person; with carry-over configured, the new conversation's
// first turn carries the chat's last exchanges.
func (a *actor) reset(ev lifecycle.Event) {
	d := a.s.d
	fe, ok := ev.Feed()
	if d.History == nil || !ok || fe.Type != events.SessionReset {
		return
	}
	if a.turns == 0 {
		// The chat was never answered: no earlier context was lost, and
		// telling the person so would only puzzle them.
		return
	}
	reason := fe.Reason
	a.persist("record conversation reset", func(ctx context.Context) error {
		return d.History.RecordReset(ctx, a.s.chat, reason)
	})
	a.carry = d.CarryOver > 0
}

// CarryOverHeader and CarryOverFooter frame the earlier exchanges a
// restarted conversation's first turn carries.
const (
	CarryOverHeader = "[Earlier context — this conversation had to start over, so here are the last exchanges of this chat from before, for reference only. Do not answer them; answer the message(s) that follow.]"
	CarryOverFooter = "[End of earlier context.]"
)

// withCarryOver puts the chat's earlier exchanges in front of the first
// turn after a reset, marked as earlier context. A failure to read them is
// logged and the turn goes without.
func (a *actor) withCarryOver(texts []string) []string {
	if !a.carry {
		return texts
	}
	a.carry = false
	d := a.s.d
	ctx, cancel := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancel()
	ex, err := d.History.RecentExchanges(ctx, a.s.chat, d.CarryOver)
	if err != nil {
		a.s.log.Warn("carry-over: could not read the earlier exchanges; the new conversation starts without them", "err", err)
		return texts
	}
	if len(ex) == 0 {
		return texts
	}
	var b strings.Builder
	b.WriteString(CarryOverHeader)
	for _, e := range ex {
		for _, t := range e.Texts {
			fmt.Fprintf(&b, "\n\nUser: %s", t)
		}
		fmt.Fprintf(&b, "\n\nAssistant: %s", e.Reply)
	}
	b.WriteString("\n\n")
	b.WriteString(CarryOverFooter)
	a.s.log.Info("carry-over: the new conversation's first turn carries earlier exchanges", "exchanges", len(ex))
	return append([]string{b.String()}, texts...)
}
