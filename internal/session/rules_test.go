package session

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/lifecycle"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func testRules() Rules {
	return Rules{
		MaxErrors: 3, StuckTimeout: 10 * time.Minute, FirstTurnStuckTimeout: 30 * time.Minute,
		IdleTimeout: 2 * time.Hour, Master: "master", ExemptSuffix: "-bg",
		MaxRestarts: 3, RestartWindow: 20 * time.Minute, BackoffInitial: time.Second, BackoffMax: 5 * time.Minute,
	}
}

func live(chat string) Snapshot {
	return Snapshot{ChatID: chat, State: Idle, ProcUp: true, LastActivity: t0, LastHandover: t0}
}

func TestVerdict(t *testing.T) {
	r := testRules()
	busy := func(started time.Time, output time.Time, first bool) Snapshot {
		s := live("a")
		s.State, s.Busy, s.TurnStarted, s.LastOutput, s.FirstTurn = Busy, true, started, output, first
		return s
	}
	with := func(f func(*Snapshot)) Snapshot { s := live("a"); f(&s); return s }
	tests := []struct {
		name    string
		snap    Snapshot
		q       Queue
		now     time.Time
		apiDown bool
		healthy bool
		reason  string
	}{
		{"idle ok", live("a"), Queue{}, t0.Add(time.Hour), false, true, "ok"},
		{"stopped is healthy", with(func(s *Snapshot) { s.State, s.ProcUp = Stopped, false }), Queue{}, t0, false, true, "stopped"},
		{"failed", with(func(s *Snapshot) { s.State, s.ProcUp, s.FailReason = Failed, false, "3 restarts" }), Queue{}, t0, false, false, "failed: 3 restarts"},
		{"process gone", with(func(s *Snapshot) { s.ProcUp = false }), Queue{}, t0, false, false, "dead"},
		{"agent being started", with(func(s *Snapshot) { s.State, s.ProcUp = Starting, false }), Queue{}, t0, false, true, "starting"},
		{"restart pending is still dead", with(func(s *Snapshot) { s.State, s.ProcUp, s.RestartPending = Starting, false, true }), Queue{}, t0, false, false, "dead"},
		{"2 errors ok", with(func(s *Snapshot) { s.ErrorCount = 2 }), Queue{}, t0, false, true, "ok"},
		{"3 errors", with(func(s *Snapshot) { s.ErrorCount = 3 }), Queue{}, t0, false, false, "errors=3"},
		{"4 errors", with(func(s *Snapshot) { s.ErrorCount = 4 }), Queue{}, t0, false, false, "errors=4"},
		{"busy at stuck limit", busy(t0, time.Time{}, false), Queue{}, t0.Add(10 * time.Minute), false, true, "ok"},
		{"busy past stuck limit", busy(t0, time.Time{}, false), Queue{}, t0.Add(10*time.Minute + time.Second), false, false, "stuck"},
		{"recent output is not stuck", busy(t0, t0.Add(5*time.Minute), false), Queue{}, t0.Add(14 * time.Minute), false, true, "ok"},
		{"output then silence", busy(t0, t0.Add(5*time.Minute), false), Queue{}, t0.Add(15*time.Minute + time.Second), false, false, "stuck"},
		{"first turn at 29m", busy(t0, time.Time{}, true), Queue{}, t0.Add(29 * time.Minute), false, true, "ok"},
		{"first turn at 30m", busy(t0, time.Time{}, true), Queue{}, t0.Add(30 * time.Minute), false, true, "ok"},
		{"first turn past 30m", busy(t0, time.Time{}, true), Queue{}, t0.Add(30*time.Minute + time.Second), false, false, "stuck"},
		{"queue fresh", live("a"), Queue{Depth: 1, Oldest: t0.Add(59 * time.Minute)}, t0.Add(time.Hour), false, true, "ok"},
		{"queue stale", live("a"), Queue{Depth: 2, Oldest: t0}, t0.Add(10*time.Minute + time.Second), false, false, "stale_queue"},
		{"queue stale but api down", live("a"), Queue{Depth: 2, Oldest: t0}, t0.Add(time.Hour), true, true, "ok"},
		{"queue stale but held by gate", with(func(s *Snapshot) { s.Held = true }), Queue{Depth: 2, Oldest: t0}, t0.Add(time.Hour), false, true, "ok"},
		{"recent handover", with(func(s *Snapshot) { s.LastHandover = t0.Add(time.Hour) }), Queue{Depth: 1, Oldest: t0}, t0.Add(time.Hour + 5*time.Minute), false, true, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := r.Verdict(tt.snap, tt.q, tt.now, tt.apiDown)
			if v.Healthy != tt.healthy || v.Reason != tt.reason {
				t.Fatalf("Verdict = %+v, want healthy=%v reason=%q", v, tt.healthy, tt.reason)
			}
		})
	}
}

func TestReapable(t *testing.T) {
	r := testRules()
	idle := 2 * time.Hour
	with := func(chat string, f func(*Snapshot)) Snapshot { s := live(chat); f(&s); return s }
	none := func(*Snapshot) {}
	tests := []struct {
		name string
		snap Snapshot
		q    Queue
		now  time.Time
		want bool
	}{
		{"idle exactly 2h", live("a"), Queue{}, t0.Add(idle), false},
		{"idle 2h+1s", live("a"), Queue{}, t0.Add(idle + time.Second), true},
		{"idle 1h", live("a"), Queue{}, t0.Add(time.Hour), false},
		{"master", with("master", none), Queue{}, t0.Add(10 * idle), false},
		{"-bg suffix", with("nightly-bg", none), Queue{}, t0.Add(10 * idle), false},
		{"bg without dash is not exempt", with("nightlybg", none), Queue{}, t0.Add(idle + time.Second), true},
		{"flagged exempt", with("a", func(s *Snapshot) { s.ExemptFlag = true }), Queue{}, t0.Add(10 * idle), false},
		{"busy", with("a", func(s *Snapshot) { s.Busy, s.State = true, Busy }), Queue{}, t0.Add(10 * idle), false},
		{"waiting messages", live("a"), Queue{Depth: 1, Oldest: t0}, t0.Add(10 * idle), false},
		{"already stopped", with("a", func(s *Snapshot) { s.State, s.ProcUp = Stopped, false }), Queue{}, t0.Add(10 * idle), false},
		{"failed", with("a", func(s *Snapshot) { s.State, s.ProcUp = Failed, false }), Queue{}, t0.Add(10 * idle), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Reapable(tt.snap, tt.q, tt.now); got != tt.want {
				t.Fatalf("Reapable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExempt(t *testing.T) {
	r := testRules()
	for chat, want := range map[string]bool{"master": true, "x-bg": true, "-bg": true, "alice": false, "masterx": false, "bg": false} {
		if got := r.Exempt(chat, false); got != want {
			t.Errorf("Exempt(%q) = %v, want %v", chat, got, want)
		}
	}
	if !r.Exempt("alice", true) {
		t.Error("a flagged chat must be exempt")
	}
	r.ExemptSuffix = ""
	if r.Exempt("x-bg", false) {
		t.Error("an empty suffix must exempt nothing")
	}
}

func TestNextRestart(t *testing.T) {
	r := testRules()
	ago := func(ds ...time.Duration) []time.Time {
		var h []time.Time
		for _, d := range ds {
			h = append(h, t0.Add(-d))
		}
		return h
	}
	tests := []struct {
		name    string
		history []time.Time
		delay   time.Duration
		ok      bool
	}{
		{"first restart is immediate", nil, 0, true},
		{"second waits the initial backoff", ago(time.Minute), time.Second, true},
		{"third waits twice as long", ago(2*time.Minute, time.Minute), 2 * time.Second, true},
		{"fourth within the window fails", ago(3*time.Minute, 2*time.Minute, time.Minute), 0, false},
		{"old restarts fall out of the window", ago(21*time.Minute, 20*time.Minute, time.Minute), time.Second, true},
		{"exactly at the window edge is out", ago(20 * time.Minute), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := r.NextRestart(tt.history, t0)
			if d != tt.delay || ok != tt.ok {
				t.Fatalf("NextRestart = %v, %v; want %v, %v", d, ok, tt.delay, tt.ok)
			}
		})
	}
	// growth is capped by BackoffMax
	r.MaxRestarts = 100
	r.BackoffMax = 5 * time.Second
	var h []time.Time
	for range 10 {
		h = append(h, t0)
	}
	if d, ok := r.NextRestart(h, t0); !ok || d != 5*time.Second {
		t.Fatalf("capped delay = %v, %v; want 5s", d, ok)
	}
}

// TestDecide is the fault model, row by row: every way a turn ends, who is
// to blame and what follows (docs/faults.md is this table in prose).
func TestDecide(t *testing.T) {
	type D = Decision
	tests := []struct {
		name string
		end  TurnEnd
		want Decision
	}{
		{"answered", TurnEnd{Ending: EndAnswered},
			D{NoFault, FateDone, Answered, CarryOn, ErrorsReset, false}},
		{"outage, nobody else answered", TurnEnd{Ending: EndErrorResult, Error: agent.Outage},
			D{BlameAPI, FateHold, Unreachable, CarryOn, ErrorsKeep, false}},
		{"outage-like error while others are answered: the conversation's own", TurnEnd{Ending: EndErrorResult, Error: agent.Outage, OthersAnswered: true},
			D{BlameConversation, FateCharge, Released, CarryOn, ErrorsGrow, true}},
		{"rejected credentials", TurnEnd{Ending: EndErrorResult, Error: agent.Auth},
			D{BlameDaemon, FateHold, Unreachable, CarryOn, ErrorsKeep, false}},
		{"context too long", TurnEnd{Ending: EndErrorResult, Error: agent.ContextTooLong},
			D{BlameConversation, FateCharge, Answered, RestartClean, ErrorsGrow, false}},
		{"error result", TurnEnd{Ending: EndErrorResult, Error: agent.Fault},
			D{BlameMessage, FateCharge, Answered, CarryOn, ErrorsGrow, true}},
		{"resume failed from a --resume start", TurnEnd{Ending: EndErrorResult, Error: agent.ResumeFailed, ResumeStart: true},
			D{BlameConversation, FateRequeue, Released, StartFresh, ErrorsKeep, false}},
		{"'resume failed' after the first turn is the turn's error", TurnEnd{Ending: EndErrorResult, Error: agent.ResumeFailed},
			D{BlameMessage, FateCharge, Answered, CarryOn, ErrorsGrow, true}},
		{"exit: resume failed", TurnEnd{Ending: EndExited, Error: agent.ResumeFailed, ResumeStart: true},
			D{BlameConversation, FateRequeue, Released, StartFresh, ErrorsKeep, false}},
		{"exit: 'resume failed' not from a resume start", TurnEnd{Ending: EndExited, Error: agent.ResumeFailed, Delivery: Output},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"exit before reading the turn", TurnEnd{Ending: EndExited, Delivery: NotDelivered},
			D{BlameAgent, FateRequeue, Released, Restart, ErrorsKeep, false}},
		{"exit after reading, before output, once", TurnEnd{Ending: EndExited, Delivery: NoOutput},
			D{BlameAgent, FateRequeue, Released, Restart, ErrorsKeep, false}},
		{"exit after reading, before output, again", TurnEnd{Ending: EndExited, Delivery: NoOutput, Repeat: true},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"crash after output", TurnEnd{Ending: EndExited, Delivery: Output},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"input closed, or unread when given up on: never delivered", TurnEnd{Ending: EndUndelivered},
			D{BlameAgent, FateRequeue, Released, Restart, ErrorsKeep, false}},
		{"never delivered, even while others are answered", TurnEnd{Ending: EndUndelivered, OthersAnswered: true},
			D{BlameAgent, FateRequeue, Released, Restart, ErrorsKeep, false}},
		{"never delivered: handed to a process that had ended (its exit is judged on its own)", TurnEnd{Ending: EndUndelivered, ProcessEnded: true},
			D{NoFault, FateRequeue, Released, JudgeExit, ErrorsKeep, false}},
		{"silent while nobody gets answers: outage signal", TurnEnd{Ending: EndSilent},
			D{BlameAPI, FateRequeue, Unreachable, RestartPlain, ErrorsKeep, false}},
		{"silent while others are answered", TurnEnd{Ending: EndSilent, OthersAnswered: true},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"stuck after output, or past max_turn", TurnEnd{Ending: EndStuck},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"stuck is never an answer, whoever else answers", TurnEnd{Ending: EndStuck, OthersAnswered: true},
			D{BlameMessage, FateCharge, Released, Restart, ErrorsKeep, false}},
		{"stopped on purpose", TurnEnd{Ending: EndStopped},
			D{NoFault, FateRequeue, Released, CarryOn, ErrorsKeep, false}},
		{"stopped by its person (/stop): answered, not retried", TurnEnd{Ending: EndHalted},
			D{NoFault, FateHalted, Released, CarryOn, ErrorsKeep, false}},
		{"start failed: daemon out of resources", TurnEnd{Ending: EndStartFailed, DaemonError: true},
			D{BlameDaemon, FateNone, Released, RetryStart, ErrorsKeep, false}},
		{"start failed", TurnEnd{Ending: EndStartFailed},
			D{BlameAgent, FateNone, Released, Restart, ErrorsKeep, false}},
		{"clean exit after answering", TurnEnd{Ending: EndIdleExit, CleanExit: true, Answered: true},
			D{NoFault, FateNone, Released, RestartPlain, ErrorsKeep, false}},
		{"clean exit before answering anything", TurnEnd{Ending: EndIdleExit, CleanExit: true},
			D{BlameAgent, FateNone, Released, Restart, ErrorsKeep, false}},
		{"idle crash", TurnEnd{Ending: EndIdleExit, Answered: true},
			D{BlameAgent, FateNone, Released, Restart, ErrorsKeep, false}},
		{"idle exit: resume failed", TurnEnd{Ending: EndIdleExit, Error: agent.ResumeFailed, ResumeStart: true},
			D{BlameConversation, FateNone, Released, StartFresh, ErrorsKeep, false}},
		{"idle exit: 'resume failed' after a turn", TurnEnd{Ending: EndIdleExit, Error: agent.ResumeFailed, Answered: true},
			D{BlameAgent, FateNone, Released, Restart, ErrorsKeep, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.end); got != tt.want {
				t.Fatalf("Decide(%+v)\n got %+v\nwant %+v", tt.end, got, tt.want)
			}
		})
	}
}

// Which answers elsewhere count against a failed turn: only those after
// its own evidence of failure (its first retry), or, without retries of its
// own, after its end (a silent turn: its start) or the chat's last failure
// put down to an outage.
func TestBlameSince(t *testing.T) {
	start, end := t0, t0.Add(90*time.Second)
	retry := t0.Add(30 * time.Second)
	tests := []struct {
		name string
		ev   Evidence
		want time.Time
	}{
		{"error result, no retry reported: from the result (an outage that began mid-turn is not the turn's)",
			Evidence{Started: start, Ended: end}, end},
		{"error result after retries: from the first retry",
			Evidence{Started: start, Ended: end, FirstRetry: retry}, retry},
		{"a retry reported before this turn began does not count",
			Evidence{Started: start, Ended: end, FirstRetry: start.Add(-time.Second)}, end},
		{"silent: from its start (it never got anything)",
			Evidence{Started: start, Ended: end, Silent: true}, start},
		{"silent after retries: from the first retry",
			Evidence{Started: start, Ended: end, FirstRetry: retry, Silent: true}, retry},
		{"last failure put down to an outage, earlier: from that failure",
			Evidence{Started: start, Ended: end, OutageAt: start.Add(-time.Minute)}, start.Add(-time.Minute)},
		{"a turn with retries of its own is judged by its own window, not the last outage failure",
			Evidence{Started: start, Ended: end, FirstRetry: retry, OutageAt: start.Add(-time.Minute)}, retry},
		{"silent, last failure put down to an outage earlier: from that failure",
			Evidence{Started: start, Ended: end, Silent: true, OutageAt: start.Add(-time.Minute)}, start.Add(-time.Minute)},
		{"exactly at the boundary",
			Evidence{Started: start, Ended: end, FirstRetry: start}, start},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BlameSince(tt.ev); !got.Equal(tt.want) {
				t.Fatalf("BlameSince(%+v) = %v, want %v", tt.ev, got, tt.want)
			}
		})
	}
}

// No ending blames a message and holds it, or holds messages without
// telling the breaker: held messages are only ever the API's (or the
// daemon's credentials').
func TestDecideInvariants(t *testing.T) {
	for e := EndAnswered; e <= EndIdleExit; e++ {
		for _, k := range []agent.Kind{agent.Fault, agent.Outage, agent.ContextTooLong, agent.ResumeFailed, agent.Auth} {
			for _, dl := range []Delivery{NotDelivered, NoOutput, Output} {
				for bits := range 64 {
					end := TurnEnd{Ending: e, Error: k, Delivery: dl, Repeat: bits&1 != 0, ResumeStart: bits&2 != 0,
						CleanExit: bits&4 != 0, OthersAnswered: bits&8 != 0, DaemonError: bits&16 != 0, ProcessEnded: bits&32 != 0}
					d := Decide(end)
					if d.Messages == FateCharge && (d.Party == BlameAPI || d.Party == BlameAgent || d.Party == BlameDaemon || d.Party == NoFault) {
						t.Errorf("%+v: charged for a failure of %v", end, d.Party)
					}
					if d.Breaker == Unreachable && (end.OthersAnswered && d.Party == BlameAPI || d.Party != BlameAPI && d.Party != BlameDaemon) {
						t.Errorf("%+v: breaker told unreachable though %v is to blame (others answered: %v)", end, d.Party, end.OthersAnswered)
					}
					if (e == EndStuck || e == EndSilent) && d.Breaker == Answered {
						t.Errorf("%+v: a stuck turn counted as an answer", end)
					}
					if d.Follow == StartFresh && !end.ResumeStart {
						t.Errorf("%+v: a conversation dropped outside a failed --resume start", end)
					}
				}
			}
		}
	}
}

func TestRetryDelay(t *testing.T) {
	r := testRules()
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 20: 5 * time.Minute} {
		if got := r.RetryDelay(n); got != want {
			t.Errorf("RetryDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestDaemonResourceError(t *testing.T) {
	for err, want := range map[error]bool{
		fmt.Errorf("claude: pipes: %w", &os.SyscallError{Syscall: "pipe2", Err: syscall.EMFILE}): true,
		fmt.Errorf("fork/exec: %w", syscall.EAGAIN):                                              true,
		fmt.Errorf("x: %w", syscall.ENOMEM):                                                      true,
		fmt.Errorf("x: %w", syscall.ENFILE):                                                      true,
		fmt.Errorf("exec: %w", syscall.ENOENT):                                                   false,
		errors.New("too many open files"):                                                        false,
	} {
		if got := DaemonResourceError(err); got != want {
			t.Errorf("DaemonResourceError(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestVerdictMaxTurn(t *testing.T) {
	r := testRules()
	r.MaxTurn = time.Hour
	s := live("a")
	s.State, s.Busy, s.TurnStarted = Busy, true, t0
	s.LastOutput = t0.Add(time.Hour) // keeps writing (stderr)
	if v := r.Verdict(s, Queue{}, t0.Add(time.Hour), false); !v.Healthy {
		t.Fatalf("at max_turn: %+v", v)
	}
	if v := r.Verdict(s, Queue{}, t0.Add(time.Hour+time.Second), false); v.Healthy || v.Reason != ReasonStuck {
		t.Fatalf("past max_turn with fresh output: %+v, want stuck", v)
	}
}

// TestVerdictAsking: while the agent waits for a person both clocks
// stop; after the answer the stuck clock starts again from it and the
// max-turn clock counts the turn's time without its waits.
func TestVerdictAsking(t *testing.T) {
	r := testRules() // stuck after 10m
	r.MaxTurn = time.Hour
	busy := func(f func(*Snapshot)) Snapshot {
		s := live("a")
		s.State, s.Busy, s.TurnStarted = Busy, true, t0
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name    string
		s       Snapshot
		now     time.Time
		healthy bool
		reason  string
	}{
		{"asking long past both limits", busy(func(s *Snapshot) { s.Asking = true }), t0.Add(5 * time.Hour), true, ReasonAsking},
		{"answered: stuck clock from the answer, at its limit", busy(func(s *Snapshot) {
			s.Waited, s.LastAnswer = 2*time.Hour, t0.Add(2*time.Hour+time.Minute)
		}), t0.Add(2*time.Hour + 11*time.Minute), true, ReasonOK},
		{"answered: silence past the stuck limit after it", busy(func(s *Snapshot) {
			s.Waited, s.LastAnswer = 2*time.Hour, t0.Add(2*time.Hour+time.Minute)
		}), t0.Add(2*time.Hour + 11*time.Minute + time.Second), false, ReasonStuck},
		{"max turn less the waits, at the limit", busy(func(s *Snapshot) {
			s.Waited, s.LastAnswer, s.LastOutput = 2*time.Hour, t0.Add(2*time.Hour), t0.Add(3*time.Hour)
		}), t0.Add(3 * time.Hour), true, ReasonOK},
		{"max turn less the waits, past it", busy(func(s *Snapshot) {
			s.Waited, s.LastAnswer, s.LastOutput = 2*time.Hour, t0.Add(2*time.Hour), t0.Add(3*time.Hour)
		}), t0.Add(3*time.Hour + time.Second), false, ReasonStuck},
		{"not asking: the old rule", busy(func(s *Snapshot) {}), t0.Add(10*time.Minute + time.Second), false, ReasonStuck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := r.Verdict(tc.s, Queue{}, tc.now, false)
			if v.Healthy != tc.healthy || v.Reason != tc.reason {
				t.Fatalf("Verdict = %+v, want healthy=%v reason=%s", v, tc.healthy, tc.reason)
			}
		})
	}
}

func TestAlive(t *testing.T) {
	r := testRules()
	for _, tc := range []struct {
		name string
		s    Snapshot
		want bool
	}{
		{"idle with a process", Snapshot{State: Idle, ProcUp: true}, true},
		{"busy with a process", Snapshot{State: Busy, ProcUp: true, Busy: true}, true},
		{"no process", Snapshot{State: Idle}, false},
		{"stopped", Snapshot{State: Stopped, ProcUp: true}, false},
		{"failed", Snapshot{State: Failed, ProcUp: true}, false},
		{"at max_errors", Snapshot{State: Idle, ProcUp: true, ErrorCount: 3}, false},
		{"below max_errors", Snapshot{State: Idle, ProcUp: true, ErrorCount: 2}, true},
	} {
		if got := r.Alive(tc.s); got != tc.want {
			t.Errorf("%s: Alive = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestRestartNow(t *testing.T) {
	for _, tc := range []struct {
		v       Verdict
		pending bool
		want    bool
	}{
		{restart(lifecycle.Dead, ReasonDead), false, true},
		{restart(lifecycle.Dead, ReasonDead), true, false},
		{unhealthy(ReasonStoreError), false, false},
		{healthy(ReasonOK), false, false},
	} {
		if got := RestartNow(tc.v, Snapshot{RestartPending: tc.pending}); got != tc.want {
			t.Errorf("RestartNow(%+v, pending %t) = %t, want %t", tc.v, tc.pending, got, tc.want)
		}
	}
}

func TestStillReapable(t *testing.T) {
	r := testRules()
	idle := Snapshot{ChatID: "c", State: Idle, ProcUp: true, LastActivity: t0}
	late := t0.Add(3 * time.Hour)
	for _, tc := range []struct {
		name string
		s    Snapshot
		now  time.Time
		want bool
	}{
		{"still idle", idle, late, true},
		{"active since", idle, t0.Add(time.Hour), false},
		{"took a turn meanwhile", Snapshot{ChatID: "c", State: Busy, ProcUp: true, Busy: true, LastActivity: t0}, late, false},
		{"stopped meanwhile", Snapshot{ChatID: "c", State: Stopped, LastActivity: t0}, late, false},
		{"exempt", Snapshot{ChatID: "master", State: Idle, ProcUp: true, LastActivity: t0}, late, false},
	} {
		if got := r.StillReapable(tc.s, tc.now); got != tc.want {
			t.Errorf("%s: StillReapable = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestVerdictCause(t *testing.T) {
	r := testRules()
	for _, tc := range []struct {
		s    Snapshot
		q    Queue
		want lifecycle.Cause
	}{
		{Snapshot{State: Idle}, Queue{}, lifecycle.Dead},
		{Snapshot{State: Idle, ProcUp: true, ErrorCount: 3}, Queue{}, lifecycle.Errors},
		{Snapshot{State: Busy, ProcUp: true, Busy: true, TurnStarted: t0}, Queue{}, lifecycle.Stuck},
		{Snapshot{State: Idle, ProcUp: true, LastHandover: t0}, Queue{Depth: 1, Oldest: t0}, lifecycle.StaleQueue},
	} {
		v := r.Verdict(tc.s, tc.q, t0.Add(time.Hour), false)
		if !v.Restart || v.Cause != tc.want {
			t.Errorf("Verdict(%+v) = %+v, want a restart for %s", tc.s, v, tc.want)
		}
	}
}

func TestProbeAnswered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		cancelled bool
		want      bool
	}{
		{"answered", nil, false, true},
		{"answered as the context ended", nil, true, true},
		{"outage", agent.Errorf(agent.Outage, "overloaded"), false, false},
		{"credentials rejected", agent.Errorf(agent.Auth, "401"), false, false},
		{"agent exited", agent.Errorf(agent.Exited, "exit status 1"), false, false},
		{"agent exited before writing anything", agent.Errorf(agent.ExitedSilent, "exit status 1"), false, false},
		{"not delivered", agent.Errorf(agent.Undelivered, "broken pipe"), false, false},
		{"timed out", errors.New("context deadline exceeded"), true, false},
		{"an error of the turn's own", agent.Errorf(agent.Fault, "tool failed"), false, true},
		{"context too long", agent.Errorf(agent.ContextTooLong, "prompt is too long"), false, true},
	} {
		if got := ProbeAnswered(tc.err, tc.cancelled); got != tc.want {
			t.Errorf("%s: ProbeAnswered = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// A session another node runs shows by the same exemption rule as a local
// one (the master session and the exempt suffix included), with its state
// from its saved record.
func TestRemote(t *testing.T) {
	r := testRules()
	for _, tc := range []struct {
		name string
		in   Remote
		want RemoteView
	}{
		{"live on its owner", Remote{ChatID: "alice", Owner: "b", Live: true},
			RemoteView{State: Idle, Alive: true, Healthy: true, Reason: "on node b"}},
		{"master, live elsewhere", Remote{ChatID: "master", Owner: "b", Live: true},
			RemoteView{State: Idle, Alive: true, Healthy: true, Reason: "on node b", Exempt: true}},
		{"exempt suffix, stopped", Remote{ChatID: "job-bg", Owner: "b"},
			RemoteView{State: Stopped, Healthy: true, Reason: "on node b", Exempt: true}},
		{"flagged at run time", Remote{ChatID: "alice", Owner: "b", Live: true, Flagged: true},
			RemoteView{State: Idle, Alive: true, Healthy: true, Reason: "on node b", Exempt: true}},
		{"live record, no owner", Remote{ChatID: "alice", Live: true},
			RemoteView{State: Stopped, Healthy: true, Reason: "no owner"}},
		{"failed", Remote{ChatID: "alice", Owner: "b", Live: true, Failed: true, FailReason: "too many restarts"},
			RemoteView{State: Failed, Reason: "failed: too many restarts"}},
		{"failed master stays exempt", Remote{ChatID: "master", Failed: true},
			RemoteView{State: Failed, Reason: "no owner", Exempt: true}},
		{"paused", Remote{ChatID: "x-bg", Owner: "b", Live: true, Paused: true},
			RemoteView{State: Paused, Healthy: true, Reason: "on node b", Exempt: true}},
	} {
		if got := r.Remote(tc.in); got != tc.want {
			t.Errorf("%s: Remote = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
