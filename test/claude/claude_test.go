package claude

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestReply (a): a message goes through dispatch and the real CLI to the
// API and the API's text comes back as the reply. The CLI is started with
// the stream-json flags and dispatch's --session-id, keeps that id (its
// transcript is saved under it), and one process carries the conversation
// from turn to turn (reply #2).
func TestReply(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	cmd := exec.Command(claudeBin(t), "--version")
	cmd.Env = append(os.Environ(), "HOME="+r.home)
	if out, err := cmd.Output(); err == nil {
		t.Logf("Claude Code %s", strings.TrimSpace(string(out)))
	}

	began := time.Now()
	wantReply(t, r.ask("alice", "hello there"), "hello there", 1)
	t.Logf("first reply (cold CLI start) after %s", time.Since(began).Round(time.Millisecond))

	reqs := r.api.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake API saw %d messages requests, want 1:\n%s", len(reqs), r.describeRequests())
	}
	rec := reqs[0]
	if rec.Method != "POST" || rec.Path != "/v1/messages" || rec.Request == nil || !rec.Request.Stream {
		t.Errorf("request %s %s (streaming %v), want a streaming POST /v1/messages", rec.Method, rec.Path, rec.Request != nil && rec.Request.Stream)
	}
	if got := userTexts(rec); len(got) != 1 || got[0] != "hello there" {
		t.Errorf("user texts in the request %q, want [hello there]", got)
	}
	if rec.Header.Get("X-Api-Key") == "" && rec.Header.Get("Authorization") == "" {
		t.Error("the CLI sent no credentials (agent.env ANTHROPIC_API_KEY not passed?)")
	}
	for _, other := range r.api.AllRequests() {
		if other.Path != "/v1/messages" {
			t.Logf("the CLI also called %s %s", other.Method, other.Path)
		}
	}

	r.idle("alice")
	st := r.statusCLI()
	if len(st.Sessions) != 1 {
		t.Fatalf("status sessions %+v, want one", st.Sessions)
	}
	s := st.Sessions[0]
	if s.ChatID != "alice" || s.State != "idle" || !s.Alive || !s.Healthy || s.Turns != 1 || s.Restarts != 0 || s.ErrorCount != 0 || s.SessionID == "" || s.Pid == 0 {
		t.Errorf("status after one turn: %+v", s)
	}
	if st.Daemon.API != "up" {
		t.Errorf("api %q, want up", st.Daemon.API)
	}
	r.wantArgv(s.Pid, false, s.SessionID)
	if _, ok := r.transcript(s.SessionID); !ok {
		t.Errorf("no CLI transcript for session_id %s under %s: the CLI did not use dispatch's id", s.SessionID, r.home)
	}

	// The same process answers the next turn within the same conversation.
	wantReply(t, r.ask("alice", "and again"), "and again", 2)
	if s2 := r.idle("alice"); s2.Pid != s.Pid || s2.SessionID != s.SessionID || s2.Turns != 2 {
		t.Errorf("after turn 2: pid %d→%d, session %s→%s, turns %d", s.Pid, s2.Pid, s.SessionID, s2.SessionID, s2.Turns)
	}
	r.noOrphanKills()
}

// TestResumeAfterDaemonRestart (b): the conversation survives the daemon.
// After SIGTERM (clean shutdown, exit 0, no CLI left behind) and after
// kill -9, the restarted daemon starts the session's CLI again with
// --resume of the same session_id, and the next request to the API carries
// the earlier user messages (reply #2, then #3).
func TestResumeAfterDaemonRestart(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("bob", "first"), "first", 1)
	sid := r.idle("bob").SessionID

	code, took := r.d.Term()
	if code != 0 {
		t.Errorf("daemon exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("SIGTERM: daemon exited in %s", took.Round(time.Millisecond))
	if left := r.d.WaitNoProcs(5 * time.Second); len(left) > 0 {
		t.Errorf("CLI processes outlived the daemon: %v", left)
	}

	resumed := func(what string) {
		t.Helper()
		var s supervisor.SessionStatus
		// A session that was live is started again at startup, before any
		// new message.
		r.d.WaitFor(func() bool { s = r.session("bob"); return s.Pid != 0 && s.State == "idle" }, turnTimeout, "bob's CLI started again after "+what)
		started := r.events("bob", "start", "resume "+sid)
		if n := len(started); n > 0 {
			t.Logf("after %s: status shows the resumed CLI %s after its start", what, time.Since(started[n-1].Time).Round(time.Millisecond))
		}
		if s.SessionID != sid {
			t.Errorf("after %s: session_id %s, want %s", what, s.SessionID, sid)
		}
		r.wantArgv(s.Pid, true, sid)
	}

	r.d.Restart()
	resumed("SIGTERM")
	reply := r.ask("bob", "second")
	wantReply(t, reply, "second", 2)
	if rec, ok := r.requestFor("second"); !ok {
		t.Error("no request for \"second\"")
	} else {
		inOrder(t, "request after SIGTERM", userTexts(rec), "first", "second")
	}

	r.d.Kill9()
	r.d.Restart()
	resumed("kill -9")
	wantReply(t, r.ask("bob", "third"), "third", 3)
	if rec, ok := r.requestFor("third"); !ok {
		t.Error("no request for \"third\"")
	} else {
		inOrder(t, "request after kill -9", userTexts(rec), "first", "second", "third")
	}
	if ev := r.events("bob", "resume_failed", ""); len(ev) > 0 {
		t.Errorf("resume failed: %v", ev)
	}
	// The CLI resumed at startup never failed: nothing may restart or kill it.
	if ev := r.events("bob", "restart", ""); len(ev) > 0 {
		t.Errorf("BUG: sessions resumed at daemon startup were restarted though their CLI never failed: %v", ev)
	}
	r.noOrphanKills()
}

// TestAPIRefused (c): with the API's port closed, the CLI's "Connection
// refused" results are an outage: the messages are held (pending, no
// failure charged), status says api: down, the session is not restarted and
// its error_count stays 0, however many health checks and probes pass. Once
// the API listens again every message is answered, in order.
func TestAPIRefused(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("carol", "before"), "before", 1)

	r.api.SetMode(fakeapi.ModeRefuse)
	texts := []string{"m1", "m2", "m3"}
	var ids []string
	for _, txt := range texts {
		ids = append(ids, r.send("carol", txt))
	}
	r.d.WaitFor(func() bool { return r.d.Status().Daemon.API == "down" }, turnTimeout, "api: down")
	r.waitChecks(6)
	// The first try met the closed port; since then only out-of-band
	// probes (throwaway conversations) have, never the chat's turn again.
	if n := strings.Count(r.sessionLog("carol"), "kind=outage"); n != 1 {
		t.Errorf("%d turns of the chat failed as an outage; want only the first try", n)
	}
	// (a probe's CLI takes seconds to start, so whether one met the closed
	// port before it opened again depends on timing; that the API came back
	// through a probe is checked below)
	r.wantHeld("carol", ids)

	r.api.SetMode(fakeapi.ModeOK)
	r.wantAnsweredInOrder("carol", ids, texts)
	if _, ok := r.requestFor(supervisor.ProbeText); !ok {
		t.Errorf("no probe request reached the API:\n%s", r.describeRequests())
	}
	if st := r.d.Status(); st.Daemon.API != "up" {
		t.Errorf("api %q after the API came back, want up", st.Daemon.API)
	}
	r.wantNoRestarts("carol")
	r.noOrphanKills()
}

// Test529Burst (d): a burst of 529 overloaded answers (the fake answers 529
// for 6 s) is an outage like a refused port: no restart, no error counted,
// no failure charged to the messages, and all of them answered in order
// once the API recovers.
func Test529Burst(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("dave", "before"), "before", 1)

	r.api.SetModeFor(fakeapi.Mode529, 6*time.Second)
	texts := []string{"m1", "m2", "m3"}
	var ids []string
	for _, txt := range texts {
		ids = append(ids, r.send("dave", txt))
	}
	r.d.WaitFor(func() bool { return r.d.Status().Daemon.API == "down" }, turnTimeout, "api: down")
	r.wantHeld("dave", ids)
	r.wantAnsweredInOrder("dave", ids, texts)
	// how many probes met the 529s depends on how fast the CLI starts
	t.Logf("%d requests met a 529", len(r.requestsIn(fakeapi.Mode529)))
	st := r.d.Status()
	if st.Daemon.API != "up" || st.Daemon.Outages < 1 {
		t.Errorf("after the burst: api %q, outages %d; want up, ≥ 1", st.Daemon.API, st.Daemon.Outages)
	}
	r.wantNoRestarts("dave")
	r.noOrphanKills()
}

// TestPromptTooLong (e): a 400 "prompt is too long" that the CLI cannot
// get past by itself (Claude Code first tries to compact the conversation;
// here the compaction request is rejected as too long as well) ends the
// turn with terminal_reason prompt_too_long. Resuming would fail the same
// way, so dispatch restarts the session clean — a new CLI with a new
// --session-id and no --resume — and charges the message one failure.
//
// Part 1: the fresh conversation gets through, so that message is
// answered by the new session (failed once, then done, reply #1: the old
// conversation is gone) and the chat carries on there.
// Part 2: the API rejects even the fresh conversation, so the message is
// dead after queue.max_attempts (2) — one clean restart per failure, no
// loop — and the chat still works afterwards.
func TestPromptTooLong(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("erin", "before"), "before", 1)
	old := r.idle("erin")

	// Part 1.
	r.api.SetMode(fakeapi.ModeTooLong)
	id := r.send("erin", "huge")
	r.d.WaitFor(func() bool { return len(r.events("erin", "restart", "restarting clean")) >= 1 }, turnTimeout, "a clean restart")
	r.api.SetMode(fakeapi.ModeOK) // the fresh CLI needs a second to start: its request meets ok
	m := r.done(id)
	t.Logf("too-long message, fresh session gets through: state %s, failures %d, attempts %d", m.State, m.Failures, m.Attempts)
	if m.Failures != 1 {
		t.Errorf("too-long message: failures %d, want 1 (charged once, then answered)", m.Failures)
	}
	wantReply(t, m.Reply, "huge", 1) // a fresh conversation holds only this message
	now := r.idle("erin")
	if now.SessionID == "" || now.SessionID == old.SessionID || now.Pid == old.Pid || now.Pid == 0 {
		t.Errorf("after the clean restart: session %s pid %d (was %s pid %d); want a new id and process", now.SessionID, now.Pid, old.SessionID, old.Pid)
	}
	r.wantArgv(now.Pid, false, now.SessionID)
	if daemontest.Alive(old.Pid) {
		t.Errorf("the old CLI (pid %d) still runs after the clean restart", old.Pid)
	}
	if ev := r.events("erin", "start", "new session "+now.SessionID); len(ev) != 1 {
		t.Errorf("lifecycle start of the new session %s: %v", now.SessionID, ev)
	}
	wantReply(t, r.ask("erin", "later"), "later", 2)

	// Part 2.
	r.api.SetMode(fakeapi.ModeTooLong)
	id = r.send("erin", "huge again")
	m = r.d.WaitMessage(id, "dead", 2*turnTimeout)
	t.Logf("too-long message, API rejects even a fresh session: state %s, failures %d, attempts %d, error %q", m.State, m.Failures, m.Attempts, m.Error)
	if m.Failures != 2 || !strings.Contains(strings.ToLower(m.Error), "too long") {
		t.Errorf("dead too-long message: failures %d, error %q; want 2 and the API's reason", m.Failures, m.Error)
	}
	// The lifecycle lines follow the store write that made the message
	// dead by a moment: wait (bounded) for them.
	daemontest.Poll(func() bool {
		return len(r.events("erin", "dead_letter", id)) >= 1 && len(r.events("erin", "restart", "restarting clean")) >= 3
	}, 10*time.Second)
	if dl := r.events("erin", "dead_letter", id); len(dl) != 1 {
		t.Errorf("dead_letter events for %s: %v, want 1", id, dl)
	}
	if ev := r.events("erin", "restart", "restarting clean"); len(ev) != 3 {
		t.Errorf("lifecycle restarts 'restarting clean': %d, want 3 (one per too-long result): %v", len(ev), ev)
	}
	// Nothing goes on knocking: no more too-long requests once it is dead.
	n := len(r.requestsIn(fakeapi.ModeTooLong))
	time.Sleep(3 * time.Second)
	if n2 := len(r.requestsIn(fakeapi.ModeTooLong)); n2 != n {
		t.Errorf("too-long requests went on after the message was dead: %d → %d", n, n2)
	}
	r.api.SetMode(fakeapi.ModeOK)
	wantReply(t, r.ask("erin", "after"), "after", 1)
	s := r.idle("erin")
	if s.State != "idle" || !s.Healthy || s.ErrorCount != 0 {
		t.Errorf("after it all: %+v", s)
	}
	t.Logf("%d too-long requests in all (the CLI's own compaction attempts included); restarts counter after 3 clean restarts: %d", n, s.Restarts)
	r.noOrphanKills()
}

// TestAuth401 (f): a 401 is the operator's problem: dispatch logs it once
// per session with a hint (ANTHROPIC_API_KEY / claude login), holds the
// messages like an outage and does not restart the session — not on the
// 401, not on the probes that keep meeting it, not at any health check.
// Once the key works again (the fake answers), the messages are answered
// in order.
func TestAuth401(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.Mode401, nil)
	texts := []string{"m1", "m2"}
	var ids []string
	for _, txt := range texts {
		ids = append(ids, r.send("frank", txt))
	}
	r.d.WaitFor(func() bool { return len(r.events("frank", "failure", "")) > 0 }, turnTimeout, "an auth failure in the lifecycle log")
	r.d.WaitFor(func() bool { return len(r.requestsIn(fakeapi.Mode401)) >= 3 }, turnTimeout, "three requests rejected with 401 (probes)")
	r.waitChecks(6)

	fails := r.events("frank", "failure", "")
	if len(fails) != 1 {
		t.Errorf("lifecycle failure lines %v, want exactly 1", fails)
	}
	for _, f := range fails {
		if !strings.Contains(f.Reason, "ANTHROPIC_API_KEY") || !strings.Contains(f.Reason, "claude login") {
			t.Errorf("auth failure without an operator hint: %s", f.Line)
		}
	}
	if n := strings.Count(r.sessionLog("frank"), "rejected the agent's credentials"); n != 1 {
		t.Errorf("session log has the credentials error %d times, want once", n)
	}
	if st := r.d.Status(); st.Daemon.API != "down" {
		t.Errorf("api %q while the key is rejected, want down (held like an outage)", st.Daemon.API)
	}
	r.wantHeld("frank", ids)
	t.Logf("%d requests rejected with 401 while held", len(r.requestsIn(fakeapi.Mode401)))

	r.api.SetMode(fakeapi.ModeOK)
	r.wantAnsweredInOrder("frank", ids, texts)
	if fails := r.events("frank", "failure", ""); len(fails) != 1 {
		t.Errorf("lifecycle failure lines %v, want exactly 1", fails)
	}
	r.wantNoRestarts("frank")
	r.noOrphanKills()
}

// TestAgentKilled (g): the CLI killed with SIGKILL (its pid from
// `dispatch status --json`) is noticed at once and started again with
// --resume of the same session_id; the conversation continues (reply #2).
func TestAgentKilled(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("gina", "first"), "first", 1)
	var before supervisor.SessionStatus
	for _, s := range r.statusCLI().Sessions {
		if s.ChatID == "gina" {
			before = s
		}
	}
	if before.Pid == 0 || !daemontest.Alive(before.Pid) {
		t.Fatalf("status --json pid %d is not a live CLI", before.Pid)
	}
	if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var after supervisor.SessionStatus
	r.d.WaitFor(func() bool {
		after = r.session("gina")
		return after.Pid != 0 && after.Pid != before.Pid
	}, 10*time.Second, "a new CLI after SIGKILL of the old one")
	if after.SessionID != before.SessionID {
		t.Errorf("session_id %s → %s, want it kept", before.SessionID, after.SessionID)
	}
	r.wantArgv(after.Pid, true, before.SessionID)
	if ev := r.events("gina", "restart", "dead"); len(ev) != 1 {
		t.Errorf("lifecycle restart lines with reason dead: %v, want 1", ev)
	}
	wantReply(t, r.ask("gina", "second"), "second", 2)
	if s := r.idle("gina"); s.Restarts != 1 || s.ErrorCount != 0 || !s.Healthy {
		t.Errorf("after the restart: restarts %d, error_count %d, healthy %t; want 1, 0, true", s.Restarts, s.ErrorCount, s.Healthy)
	}
	r.noOrphanKills()
}

// TestHangStuck (h): an API that accepts the request and never answers
// (the CLI's own timeout set far away) leaves a turn in flight with no
// output but its acknowledgement (system/init); past the stuck timeout (5 s)
// the health check restarts the session (lifecycle: restart, reason stuck)
// with --resume. With no other chat answered meanwhile, a silent turn is an
// outage signal, not the message's fault: it is not charged, the restart is
// not counted, and with the API back the new CLI answers it; the chat keeps
// working.
//
// The CLI does not leave on a closed stdin while its request hangs, so the
// stop takes the whole grace period and a SIGTERM (about 2 s here), during
// which further health checks run (every 200 ms).
func TestHangStuck(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, map[string]any{
		"health.stuck_timeout":     "5s",
		"health.check_interval":    "200ms",
		"agent.env.API_TIMEOUT_MS": "600000",
	})
	wantReply(t, r.ask("hank", "before"), "before", 1)
	before := r.idle("hank")

	r.api.SetMode(fakeapi.ModeHang)
	id := r.send("hank", "hung")
	r.d.WaitFor(func() bool { return len(r.requestsIn(fakeapi.ModeHang)) >= 1 }, turnTimeout, "the hanging request")
	hungAt := r.requestsIn(fakeapi.ModeHang)[0].Time
	r.d.WaitFor(func() bool { return len(r.events("hank", "restart", "stuck")) > 0 }, 30*time.Second, "a restart with reason stuck")
	ev := r.events("hank", "restart", "stuck")[0]
	t.Logf("stuck restart %s after the request hung: %s", ev.Time.Sub(hungAt).Round(time.Millisecond), ev.Line)
	if d := ev.Time.Sub(hungAt); d < 5*time.Second {
		t.Errorf("restarted %s after the request hung, before the 5s stuck timeout", d)
	}
	r.api.SetMode(fakeapi.ModeOK)

	m := r.settled(id)
	if m.State != "done" || m.Failures != 0 {
		t.Errorf("hung message: state %s, failures %d, error %q; want done, uncharged", m.State, m.Failures, m.Error)
	} else if !strings.HasSuffix(m.Reply, "to: hung") || replyN(t, m.Reply) < 2 {
		t.Errorf("reply %q, want the resumed conversation's answer to \"hung\"", m.Reply)
	}
	r.noStaleStuck("hank", 5*time.Second)

	after := r.idle("hank")
	if after.Pid == before.Pid || after.SessionID != before.SessionID || after.Restarts != 0 {
		t.Errorf("after the stuck restart: pid %d→%d, session %s→%s, restarts %d", before.Pid, after.Pid, before.SessionID, after.SessionID, after.Restarts)
	}
	reply := r.ask("hank", "after")
	if !strings.HasSuffix(reply, "to: after") || replyN(t, reply) < 2 {
		t.Errorf("reply %q, want the resumed conversation's answer to \"after\"", reply)
	}
	if rec, ok := r.requestFor("after"); ok {
		inOrder(t, "request after the stuck restart", userTexts(rec), "before", "hung", "after")
	}
	s := r.idle("hank")
	r.wantArgv(s.Pid, true, before.SessionID)
	r.noOrphanKills()
}

// TestOutageProbesDoNotPileUp: the CLI keeps the user message of a turn
// that failed (in memory and in its transcript, across --resume) and
// merges it into the next one. A probe that hands the held messages to the
// same conversation again therefore adds another copy each time: the
// conversation must not grow with the length of the outage. The request
// that gets through after an outage of several probes may carry each held
// message at most twice (the failed turn that found the outage, and the
// retry).
func TestOutageProbesDoNotPileUp(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("ivy", "before"), "before", 1)
	r.api.SetMode(fakeapi.Mode529)
	id := r.send("ivy", "held")
	r.d.WaitFor(func() bool { return len(r.requestsIn(fakeapi.Mode529)) >= 4 }, turnTimeout, "the first try and three probes")
	r.api.SetMode(fakeapi.ModeOK)
	m := r.done(id)
	// The retry sends a short note instead of the text the CLI already
	// keeps from the failed try; the request that got through ends with it.
	rec, ok := r.requestFor(session.RetryNote)
	if !ok {
		t.Fatalf("no request ends with the retry note:\n%s", r.describeRequests())
	}
	copies := 0
	for _, txt := range userTexts(rec) {
		if txt == "held" {
			copies++
		}
	}
	t.Logf("%d requests met a 529; the one that got through carries \"held\" %d times; reply %q", len(r.requestsIn(fakeapi.Mode529)), copies, m.Reply)
	if copies != 1 {
		t.Errorf("BUG: after %d failed tries the conversation holds the held message %d times: every probe re-sent it into the same CLI conversation, which keeps failed turns; users=%q",
			len(r.requestsIn(fakeapi.Mode529)), copies, userTexts(rec))
	}
}

// --- checks shared by the outage tests ---

// wantHeld checks that chat's messages are held: pending or in flight (a
// probe), no failure charged, and that the session has not been restarted,
// has error_count 0 and is not failed.
func (r *rig) wantHeld(chat string, ids []string) {
	r.t.Helper()
	for _, id := range ids {
		m := r.d.Message(id)
		if (m.State != "pending" && m.State != "inflight") || m.Failures != 0 {
			r.t.Errorf("held message %s: state %s, failures %d, error %q; want pending with no failure", id, m.State, m.Failures, m.Error)
		}
	}
	s := r.session(chat)
	if s.Restarts != 0 || s.ErrorCount != 0 || s.State == "failed" {
		r.t.Errorf("%s while held: restarts %d, error_count %d, state %s (%s); want 0, 0, not failed", chat, s.Restarts, s.ErrorCount, s.State, s.HealthReason)
	}
	if ev := r.events(chat, "restart", ""); len(ev) > 0 {
		r.t.Errorf("%s restarted while held: %v", chat, ev)
	}
}

// wantAnsweredInOrder waits for every message to be done and checks the
// order: the fake quotes the last text of each turn, so the turn that
// answered message i must end with message i or a later one, and the turns
// go forward; the last request carries all texts in order.
func (r *rig) wantAnsweredInOrder(chat string, ids, texts []string) {
	r.t.Helper()
	for i, id := range ids {
		if m := r.done(id); m.Failures != 0 {
			r.t.Errorf("message %s (%s): failures %d, want 0 (an outage is not its fault)", id, texts[i], m.Failures)
		}
	}
	// The last request that carries the last text is the one that got
	// through: every held text is in it once (the CLI keeps the texts of
	// failed tries; dispatch's retry adds only a note), in send order.
	reqs := r.api.Requests()
	var got []string
	for i := len(reqs) - 1; i >= 0 && got == nil; i-- {
		if ut := userTexts(reqs[i]); slices.Contains(ut, texts[len(texts)-1]) {
			got = ut
		}
	}
	if got == nil {
		r.t.Errorf("no request carries %q:\n%s", texts[len(texts)-1], r.describeRequests())
		return
	}
	inOrder(r.t, "answering request", got, texts...)
	for _, txt := range texts {
		if n := strings.Count("\x00"+strings.Join(got, "\x00")+"\x00", "\x00"+txt+"\x00"); n != 1 {
			r.t.Errorf("%q is %d times in the answering request, want once: %q", txt, n, got)
		}
	}
	r.t.Logf("%s: answered in order; requests:\n%s", chat, r.describeRequests())
}

// wantNoRestarts checks that chat was never restarted and counts no error.
func (r *rig) wantNoRestarts(chat string) {
	r.t.Helper()
	s := r.session(chat)
	if s.Restarts != 0 || s.ErrorCount != 0 || !s.Healthy {
		r.t.Errorf("%s: restarts %d, error_count %d, healthy %t (%s); want 0, 0, healthy", chat, s.Restarts, s.ErrorCount, s.Healthy, s.HealthReason)
	}
	if ev := r.events(chat, "restart", ""); len(ev) > 0 {
		r.t.Errorf("%s restarted: %v", chat, ev)
	}
}

// settled waits until message id is done or dead and returns it.
func (r *rig) settled(id string) api.MessageOut {
	r.t.Helper()
	var m api.MessageOut
	r.d.WaitFor(func() bool { m = r.d.Message(id); return m.State == "done" || m.State == "dead" }, turnTimeout, "message "+id+" done or dead")
	return m
}

// noStaleStuck fails if chat was restarted as stuck sooner than the stuck
// timeout after one of its agents started: a verdict of a health check made
// while the previous agent was still being stopped, applied to the new one.
func (r *rig) noStaleStuck(chat string, stuck time.Duration) {
	r.t.Helper()
	var lastStart time.Time
	for _, e := range r.events(chat, "", "") {
		switch e.Event {
		case "start":
			lastStart = e.Time
		case "restart":
			if strings.HasPrefix(e.Reason, "stuck") && !lastStart.IsZero() && e.Time.Sub(lastStart) < stuck {
				r.t.Errorf("BUG: %s restarted as stuck %s after its new CLI started (stuck timeout %s): a stale verdict from a health check made while the previous CLI was being stopped; %s",
					chat, e.Time.Sub(lastStart).Round(time.Millisecond), stuck, e.Line)
			}
		}
	}
}

// TestOutageThatStartsMidTurn: a turn in flight when an outage begins is
// the API's, although another chat was answered earlier in that very turn.
// The CLI reports each retry of a failed request (system/api_retry): that
// is when the turn began to fail, and nobody was answered after it, so the
// message is held, not charged, and answered once the API is back (found
// by the fault hunt: charged, and dead at the second outage).
func TestOutageThatStartsMidTurn(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, map[string]any{
		"agent.env.CLAUDE_CODE_MAX_RETRIES": "2",
		"agent.env.API_TIMEOUT_MS":          "5000",
	})
	wantReply(t, r.ask("busy", "warm"), "warm", 1)
	wantReply(t, r.ask("ada", "warm"), "warm", 1)

	r.api.SetMode(fakeapi.ModeHang) // ada's request waits for an answer
	id := r.send("ada", "cut mid-turn")
	r.d.WaitFor(func() bool { _, ok := r.requestFor("cut mid-turn"); return ok }, turnTimeout, "ada's request at the API")
	r.api.SetMode(fakeapi.ModeOK)
	wantReply(t, r.ask("busy", "answered during ada's turn"), "answered during ada's turn", 2)
	r.api.SetMode(fakeapi.ModeRefuse) // the outage begins; ada's request times out and is retried into it

	r.d.WaitFor(func() bool { return r.d.Status().Daemon.API == "down" }, turnTimeout, "api: down")
	r.wantHeld("ada", []string{id})
	r.api.SetMode(fakeapi.ModeOK)
	if m := r.done(id); m.Failures != 0 {
		t.Errorf("a turn cut by an outage that began mid-turn was charged: failures %d (%s)", m.Failures, m.Error)
	}
	if log := r.sessionLog("ada"); !strings.Contains(log, "blame=api") || strings.Contains(log, "blame=conversation") {
		t.Errorf("ada's failure not put down to the API:\n%s", tail(log, 3000))
	}
	r.wantNoRestarts("ada")
}
