package durability

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// queueListJSON runs `dispatch queue list --json` with args.
func queueListJSON(t *testing.T, d *daemontest.Daemon, args ...string) []api.MessageOut {
	t.Helper()
	out, errOut, code := d.Run(append([]string{"queue", "list", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("queue list %v: exit %d: %s", args, code, errOut)
	}
	var msgs []api.MessageOut
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("queue list %v: %q: %v", args, out, err)
	}
	return msgs
}

// sendCLI runs `dispatch send CHAT TEXT --client-id KEY`, requires exit 0
// and one id alone on stdout, and returns it. (The CLI prints only the id:
// it does not say whether the send was a duplicate; the API's duplicate
// flag is checked separately.)
func sendCLI(t *testing.T, d *daemontest.Daemon, chat, text, key string) string {
	t.Helper()
	out, errOut, code := d.Run("send", chat, text, "--client-id", key)
	if code != 0 {
		t.Fatalf("send %q --client-id %s: exit %d: %s", text, key, code, errOut)
	}
	id := strings.TrimSuffix(out, "\n")
	if id == "" || strings.ContainsAny(id, "\n ") || id == key {
		t.Fatalf("send %q --client-id %s printed %q, want a message id of dispatch's own alone on a line", text, key, out)
	}
	return id
}

// TestIdempotentSendCLI: `dispatch send CHAT TEXT --client-id K` twice
// prints the same id both times, one message is stored, and only one turn
// reaches the agent. The same key in another chat is another message with
// its own reply, and the same key with another text is refused.
//
// The chat is kept busy by a slow first message so both sends land while
// the message is still pending (the window in which a second copy could be
// queued behind it); a third send after it is done must not bring it back
// either. A sentinel sent last is answered after anything the resends
// could have queued (a chat's messages are handled in order), so once it is
// done the agent's conversation is complete: it must hold the message
// exactly once.
func TestIdempotentSendCLI(t *testing.T) {
	d := daemontest.Start(t, opts(quietChecks))
	dumpOnFailure(t, d, "idem", "other")
	const chat, key, text = "idem", "client-42", "idem #001 hello"

	block := d.Send(chat, "idem #000 SLEEP=2s")
	d.WaitMessage(block, "inflight", 10*time.Second)
	id := sendCLI(t, d, chat, text, key)
	if again := sendCLI(t, d, chat, text, key); again != id {
		t.Errorf("resend printed %s, want the original id %s", again, id)
	}

	m := d.Message(id)
	if m.State == "done" || m.State == "dead" || m.ChatID != chat || m.ClientID != key {
		t.Errorf("message %s after two sends: state %s, chat %q, client id %q; want it waiting in %q", id, m.State, m.ChatID, m.ClientID, chat)
	}
	// Waiting (pending, in flight, dead): the blocker and one copy.
	waiting := queueListJSON(t, d, "--chat", chat)
	if n := countID(waiting, id); n != 1 || len(waiting) != 2 {
		t.Errorf("queue list --chat %s: %d messages, %d with id %s; want 2 (the blocker and %s once): %+v", chat, len(waiting), n, id, id, waiting)
	}
	// The API says which send was the duplicate (the CLI does not).
	st, data := d.Post("/v1/messages", api.MessageIn{ChatID: chat, Text: text, ClientID: key})
	var acc api.Accepted
	if err := json.Unmarshal(data, &acc); st != 202 || err != nil || acc.ID != id || !acc.Duplicate {
		t.Errorf("third send over the API: HTTP %d %s; want 202 with id %s and duplicate true", st, data, id)
	}
	// The same key with another text: refused, exit 1, nothing stored.
	if _, errOut, code := d.Run("send", chat, "another text", "--client-id", key); code != 1 || !strings.Contains(errOut, "409") {
		t.Errorf("same client id, other text: exit %d, %q; want 1 and a 409", code, errOut)
	}

	d.WaitMessage(id, "done", 15*time.Second)
	if again := sendCLI(t, d, chat, text, key); again != id { // after done: still a duplicate
		t.Errorf("resend once done printed %s, want %s", again, id)
	}
	if m := d.Message(id); m.State != "done" {
		t.Errorf("message %s after a resend once done: state %s, want done", id, m.State)
	}
	d.WaitMessage(d.Send(chat, "idem #002 sentinel"), "done", 15*time.Second)

	// Another chat using the same key gets its own message and its own
	// reply: a client id never reaches across chats.
	out, errOut, code := d.Run("send", "other", "other #000 hi", "--client-id", key, "--wait", "--timeout", "15s")
	if code != 0 || !strings.Contains(out, "other #000 hi") || strings.Contains(out, "idem") {
		t.Errorf("send --wait in another chat with the same key: exit %d, %q %q; want its own reply", code, out, errOut)
	}

	all := queueListJSON(t, d, "--chat", chat, "--state", "done")
	if n := countID(all, id); n != 1 || len(all) != 3 {
		t.Errorf("queue list --chat %s --state done: %d messages, %d with id %s; want 3 messages, one of them %s", chat, len(all), countID(all, id), id, id)
	}
	if got := metric(t, d, "dispatch_messages_duplicate_total"); got != 3 {
		t.Errorf("dispatch_messages_duplicate_total %v, want 3", got)
	}
	if got := metric(t, d, "dispatch_messages_accepted_total"); got != 4 {
		t.Errorf("dispatch_messages_accepted_total %v, want 4 (block, %s, sentinel, the other chat's)", got, id)
	}
	del := deliveries(d)[chat]
	if !slices.Equal(del, []int{0, 1, 2}) {
		t.Errorf("the agent received %v (message numbers, in order); want [0 1 2]: %s exactly once", del, id)
	}
}

// TestLock: a second `dispatch daemon` on the same state dir exits
// non-zero within 1 s with a message naming the other daemon and its pid,
// and leaves the running daemon (its socket, its lock) untouched.
func TestLock(t *testing.T) {
	d := daemontest.Start(t, opts(quietChecks))
	pid := d.Pid()

	cmd := d.Cmd("daemon")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("second daemon still running 10 s later; stderr %q", stderr.String())
	}
	took := time.Since(start)
	t.Logf("second daemon: exit %v after %s; stderr %q", err, took.Round(time.Millisecond), stderr.String())
	var ee *exec.ExitError
	if err == nil {
		t.Errorf("second daemon exited 0, want non-zero")
	} else if !errors.As(err, &ee) {
		t.Errorf("second daemon: %v", err)
	}
	if took > time.Second {
		t.Errorf("second daemon took %s to exit, want under 1s", took)
	}
	msg := stderr.String()
	if !strings.Contains(msg, "another dispatch daemon") || !strings.Contains(msg, "pid "+strconv.Itoa(pid)) {
		t.Errorf("second daemon's stderr %q does not say another daemon (pid %d) holds the state dir", msg, pid)
	}

	// The first daemon is unharmed: same pid, socket still served.
	if !d.Running() {
		t.Fatalf("the first daemon is gone")
	}
	if s := d.Status(); s.Daemon.PID != pid {
		t.Errorf("status answered by pid %d, want %d", s.Daemon.PID, pid)
	}
	d.WaitMessage(d.Send("lock", "lock #000 still here"), "done", 15*time.Second)
	if code, _ := d.Term(); code != 0 {
		t.Errorf("first daemon exit %d after SIGTERM, want 0", code)
	}
}

func countID(msgs []api.MessageOut, id string) int {
	n := 0
	for _, m := range msgs {
		if m.ID == id {
			n++
		}
	}
	return n
}
