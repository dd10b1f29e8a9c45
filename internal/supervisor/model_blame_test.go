package supervisor

// The model's blame tracking (see the header of model_test.go): which
// failures each message could legitimately be charged for (charged-innocent)
// and whether the API gate held chats for another chat's failure
// (held-by-another).

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/agent/fake"
)

type blameState struct {
	// calls is the fake agent's log of Turn calls; final[i]: call i is
	// counted in allowance; before cursor every call is.
	calls  []fake.Call
	final  []bool
	seen   []bool // call i was seen ended
	cursor int
	// allowance: message id → how many of its turns ended in a way it
	// could be charged for.
	allowance map[string]int
	// silentBefore: the message was in a turn whose process exited before
	// writing anything (the same messages doing that again are charged).
	silentBefore map[string]bool

	// The current quiet period: no fault that can hit any chat or a probe
	// is armed or still in flight (only per-chat sticky faults and the
	// messages' own directives), one daemon throughout.
	quiet      bool
	quietSup   *Supervisor
	quietSince time.Time
	outagesAt  int       // the breaker's Outages when the period began
	outages    int       // and when last seen
	answers    int       // turns of the model's chats answered in the period
	upSeen     bool      // the breaker was seen up in the period
	downSince  time.Time // first seen down in the current down stretch
}

func newBlameState() blameState {
	return blameState{allowance: map[string]int{}, silentBefore: map[string]bool{}}
}

// globalHit reports whether a knob that hits whichever turn comes next (a
// probe's too) decided a call: its effect on the breaker is not one chat's.
func globalHit(hit string) bool {
	return hit != "" && hit != "sticky" && hit != "exit0" && hit != "extra" && hit != "deaf"
}

// probeBound is how long the breaker can stay down, while every probe gets
// an answer, after a probe was scheduled d (plus jitter) ahead: a probe
// interval, and a second of slack for a racing tick.
func probeBound(d time.Duration) time.Duration { return d + d/5 + time.Second }

func (m *model) isChat(chat string) bool { return slices.Contains(m.chats, chat) }

// storeBlocked: chat's session is retrying a store write, so a turn result
// may wait in its mailbox, not yet judged.
func (m *model) storeBlocked(chat string) bool {
	if !m.isChat(chat) {
		return false
	}
	ss, ok := m.sup.lookup(chat)
	return ok && ss.Snapshot().StoreError != ""
}

// observe is the cheap part of the invariants, run at every quiescent
// moment (every timer of an advance too): it reads the calls the fake
// agent logged, counts the ones that were judged into the allowances, and
// checks the API gate during quiet periods.
func (m *model) observe() bool {
	b := &m.blame
	if m.failed != "" {
		return true
	}
	if v := m.logs.violations(); len(v) > 0 {
		return m.violate(v[0][0], "%s", v[0][1])
	}
	now := m.clk.Now()
	fresh := m.ag.Calls(b.cursor)
	b.calls = append(b.calls[:b.cursor], fresh...)
	for len(b.final) < len(b.calls) {
		b.final = append(b.final, false)
		b.seen = append(b.seen, false)
	}
	active := m.ag.Armed()
	for _, c := range fresh {
		if !c.Ended && globalHit(c.Hit) {
			active = true
		}
	}
	st := m.sup.breaker.Stats()
	switch {
	case active:
		b.quiet = false
	case !b.quiet || b.quietSup != m.sup:
		b.quiet, b.quietSup, b.quietSince = true, m.sup, now
		b.outagesAt, b.outages, b.answers, b.upSeen, b.downSince = st.Outages, st.Outages, 0, st.Up, time.Time{}
	}
	for i := b.cursor; i < len(b.calls); i++ {
		c := b.calls[i]
		if !c.Ended {
			continue
		}
		if !b.seen[i] {
			b.seen[i] = true
			if b.quiet && c.OK && m.isChat(c.Chat) && !c.End.Before(b.quietSince) {
				b.answers++
			}
		}
		if b.final[i] || m.storeBlocked(c.Chat) {
			continue
		}
		b.final[i] = true
		for id, n := range m.chargeable(i, now, true) {
			b.allowance[id] += n
		}
	}
	for b.cursor < len(b.calls) && b.final[b.cursor] {
		b.cursor++
	}
	if !b.quiet {
		return false
	}
	if st.Outages != b.outages {
		// it opened (again): the probe is a ProbeMin away from now
		b.outages, b.downSince = st.Outages, time.Time{}
		if b.outages != b.outagesAt {
			b.upSeen = true
		}
	}
	if st.Up {
		b.upSeen, b.downSince = true, time.Time{}
	} else {
		if b.downSince.IsZero() {
			b.downSince = now
		}
		from, bound := b.quietSince, probeBound(m.cfg.ProbeMax)
		if b.upSeen {
			from, bound = b.downSince, probeBound(m.cfg.ProbeMin)
		}
		if now.Sub(from) > bound {
			return m.violate("held-by-another", "the API has been taken for down since %s (%s), past a probe interval (%s), in a period with no fault of the API's (quiet since %s; sticky chats %v); held chats: %v",
				b.downSince.Format(time.TimeOnly), now.Sub(b.downSince), bound, b.quietSince.Format(time.TimeOnly), slices.Sorted(mapKeys(m.sticky)), m.heldChats())
		}
	}
	if n, allowed := st.Outages-b.outagesAt, len(m.chats)+b.answers; n > allowed {
		return m.violate("held-by-another", "the breaker opened %d times since %s, in a period with no fault of the API's (sticky chats %v); at most %d (one per chat, and one more per answer a chat got) can be an outage signal",
			n, b.quietSince.Format(time.TimeOnly), slices.Sorted(mapKeys(m.sticky)), allowed)
	}
	return false
}

func (m *model) heldChats() []string {
	var out []string
	for _, chat := range m.chats {
		if ss, ok := m.sup.lookup(chat); ok && ss.Snapshot().Held {
			out = append(out, chat)
		}
	}
	return out
}

// answeredAPI reports whether the API answered a call (the breaker is told
// Answered, or a probe counts as up): a result, or an error result of the
// turn's own.
func answeredAPI(c fake.Call) bool {
	if c.OK {
		return true
	}
	if !c.Ended || c.Abandoned {
		return false
	}
	switch c.Kind {
	case agent.Fault, agent.ContextTooLong, agent.ResumeFailed:
		return true
	}
	return false
}

func stuckCall(c fake.Call) bool { return c.Abandoned && strings.Contains(c.Cause, "turn stuck") }

// outageLike: the call failed in a way the fault model puts down to the API
// when nobody else gets answers (an outage-type error, or silent until
// cancelled as stuck: the fake agent never writes anything of its own
// during a turn).
func outageLike(c fake.Call) bool {
	return stuckCall(c) || (c.Ended && !c.OK && !c.Abandoned && c.Kind == agent.Outage)
}

// othersAnswered is the model's view of session.TurnEnd.OthersAnswered for
// call i judged by upper, made wider, never narrower: from the call's start
// (the session: from its first evidence of failure, at or after the start)
// or, for a call an outage cut mid-turn, from when that outage began (no
// answer before it may count against the call); or from the end of the
// chat's first outage-like failure since its last answer if earlier (the
// session: its last one put down to an outage), any other chat's answer or
// a probe's, of any daemon, up to upper.
func (m *model) othersAnswered(i int, upper time.Time) bool {
	calls := m.blame.calls
	c := calls[i]
	since := c.Start
	if c.Hit == "cut" && c.CutAt.After(since) {
		since = c.CutAt
	}
	for j := i - 1; j >= 0; j-- {
		p := calls[j]
		if p.Chat != c.Chat || !p.Ended || p.End.After(c.Start) {
			continue
		}
		if p.OK {
			break
		}
		if outageLike(p) && p.End.Before(since) {
			since = p.End
		}
	}
	since = since.Add(-time.Second) // a racing tick may have moved the clock
	for j, p := range calls {
		if j != i && p.Chat != c.Chat && answeredAPI(p) && !p.End.Before(since) && !p.End.After(upper) {
			return true
		}
	}
	return false
}

// chargeable returns, for the messages of call i, whether it may have been
// charged for how the call ended (1) or not (0), as the fault model judges
// (session.Decide): a result never; an error result of the turn's own (an
// ERROR or NOCONV directive, fail-next, noconv-next), a too long context or
// a crash during the turn always; an outage-type error or a silent turn
// cancelled as stuck only when another chat or a probe was answered
// (othersAnswered, judged at the latest by upper); an exit before any
// output only for messages that were in such a turn before; a turn stopped
// on purpose never; a turn its agent never read (deaf) never. commit
// records the exits before any output.
func (m *model) chargeable(i int, upper time.Time, commit bool) map[string]int {
	c := m.blame.calls[i]
	var n int
	silent := false
	switch {
	case !c.Ended || c.OK:
	case c.Hit == "deaf": // never read: never the messages' fault
	case c.Abandoned:
		if stuckCall(c) && m.othersAnswered(i, upper) {
			n = 1
		}
	case c.Kind == agent.Outage, c.Kind == agent.Auth:
		if m.othersAnswered(i, upper) {
			n = 1
		}
	case c.Kind == agent.ExitedSilent:
		silent = true
	case c.Kind == agent.Undelivered:
	default: // Fault, ContextTooLong, Exited, ResumeFailed (not from a resume start: a fault)
		n = 1
	}
	out := map[string]int{}
	for _, text := range c.Texts {
		mm, ok := m.byText[text]
		if !ok || mm.chat != c.Chat {
			continue
		}
		switch {
		case silent && !commit:
			out[mm.id] = 1
		case silent:
			if m.blame.silentBefore[mm.id] {
				out[mm.id] = 1
			}
			m.blame.silentBefore[mm.id] = true
		default:
			out[mm.id] = n
		}
	}
	return out
}

// mayCharge is what each message may have been charged for so far: the
// judged calls, and those that ended but whose session may not have judged
// them yet (counted as widely as can be).
func (m *model) mayCharge() map[string]int {
	b := &m.blame
	out := make(map[string]int, len(b.allowance))
	for id, n := range b.allowance {
		out[id] = n
	}
	now := m.clk.Now()
	for i := b.cursor; i < len(b.calls); i++ {
		if b.calls[i].Ended && !b.final[i] {
			for id, n := range m.chargeable(i, now, false) {
				out[id] += n
			}
		}
	}
	return out
}

// checkCharged checks failures ≤ what the message could be charged for.
func (m *model) checkCharged(id string, failures int, may map[string]int) bool {
	mm, ok := m.byID[id]
	if !ok || mm.dropped || failures <= may[id] {
		return false
	}
	return m.violate("charged-innocent", "message %s %q has failures=%d, but only %d of its turns ended in a way it could be charged for; its turns: %s",
		id[:8], mm.text, failures, may[id], m.callsOf(mm))
}

// callsOf describes the calls that carried a message, for a report.
func (m *model) callsOf(mm *modelMsg) string {
	var parts []string
	for _, c := range m.blame.calls {
		if c.Chat != mm.chat || !slices.Contains(c.Texts, mm.text) {
			continue
		}
		how := "in flight"
		switch {
		case !c.Ended:
		case c.OK:
			how = "answered"
		case c.Abandoned:
			how = "abandoned (" + c.Cause + ")"
		default:
			how = c.Kind.String()
		}
		if c.Hit != "" {
			how += " hit=" + c.Hit
		}
		parts = append(parts, fmt.Sprintf("[%s–%s %s]", c.Start.Format(time.TimeOnly), c.End.Format(time.TimeOnly), how))
	}
	return strings.Join(parts, " ")
}
