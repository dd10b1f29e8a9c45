// Package durability runs the real dispatch binary against the stub Claude
// CLI (internal/testutil/daemontest) and checks the "no message lost"
// promises end to end (every accepted message is answered or
// dead-lettered, across outages and restarts; docs/faults.md): kill -9 of the daemon while turns
// are in flight, an API outage (with and without a kill in the middle),
// idempotent resends over the CLI, the state-dir lock, and SIGTERM with a
// turn in flight.
//
// Every test drives the daemon only through its external surface (HTTP API
// on the control socket, the CLI, signals, log files) and checks delivery
// through what the stub CLI recorded: the texts of every successful turn of
// every conversation, in order.
//
// Environment knobs: DURABILITY_SEED replays the crash test's randomness;
// DURABILITY_KEEP_LOGS=DIR copies a failed test's daemon directory (config,
// logs, database, stub records) to DIR/<test name>.
package durability

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// Shorthands for config overrides.
var (
	opts = daemontest.Set
	with = daemontest.With
)

// quietChecks keeps the health check running (every 200 ms, as in the
// harness) but makes the stuck and idle rules far away, for tests that are
// about durability, not about health verdicts: a slow turn on a loaded
// machine must not be restarted as stuck, and no session is reaped.
var quietChecks = map[string]any{
	"health.stuck_timeout":            "1m",
	"health.first_turn_stuck_timeout": "2m",
	"health.idle_timeout":             "1h",
}

// msgText is the text of message idx of chat: "<chat> #<idx>" plus extra
// (stub directives). A chat id must not contain spaces.
func msgText(chat string, idx int, extra string) string {
	s := fmt.Sprintf("%s #%03d", chat, idx)
	if extra != "" {
		s += " " + extra
	}
	return s
}

// parseText undoes msgText; ok is false for texts of another shape.
func parseText(s string) (chat string, idx int, ok bool) {
	f := strings.Fields(s)
	if len(f) < 2 || !strings.HasPrefix(f[1], "#") {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[1][1:])
	if err != nil {
		return "", 0, false
	}
	return f[0], n, true
}

// conversationIDs are the stub conversation ids the daemon used, in the
// order it first used them (from the stub's args log): a chat's fresh start
// after a failed resume shows up as a second id after the first.
func conversationIDs(d *daemontest.Daemon) []string {
	var ids []string
	for _, iv := range d.Invocations() {
		id := iv.Resume()
		if id == "" {
			id = iv.SessionID()
		}
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// deliveries reconstructs, per chat, every message text the agent answered
// successfully, in the order the agent saw them: the conversations of
// conversationIDs concatenated, each turn split into its messages (the
// stub joins a batch's texts with "\n"). Texts not of the msgText shape
// are ignored. A message can appear more than once (at-least-once).
func deliveries(d *daemontest.Daemon) map[string][]int {
	out := map[string][]int{}
	for _, id := range conversationIDs(d) {
		for _, turn := range d.Conversation(id) {
			for _, line := range strings.Split(turn, "\n") {
				if chat, idx, ok := parseText(line); ok {
					out[chat] = append(out[chat], idx)
				}
			}
		}
	}
	return out
}

// firstDelivery keeps the first occurrence of each index, in order.
func firstDelivery(seq []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, i := range seq {
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// checkOrder asserts that, for every chat in want, the order in which the
// agent first answered the chat's messages successfully (the stub's saved
// conversations) equals want[chat] (the send order), with nothing missing
// and nothing extra. It returns how many redeliveries (second or later
// sightings) it saw in total.
func checkOrder(t *testing.T, d *daemontest.Daemon, want map[string][]int) int {
	t.Helper()
	return checkOrderIn(t, "stub conversations", deliveries(d), want)
}

// statusOf is GET /v1/status without failing the test (for use while the
// daemon may be down, or from other goroutines).
func statusOf(d *daemontest.Daemon) (supervisor.Status, error) {
	st, data, err := d.Do("GET", "/v1/status", nil)
	if err != nil {
		return supervisor.Status{}, err
	}
	if st != http.StatusOK {
		return supervisor.Status{}, fmt.Errorf("GET /v1/status: HTTP %d: %s", st, data)
	}
	var s supervisor.Status
	if err := json.Unmarshal(data, &s); err != nil {
		return supervisor.Status{}, fmt.Errorf("GET /v1/status: %w", err)
	}
	return s, nil
}

// sendID POSTs a message with a client id until the daemon accepts it
// (202), retrying transport errors and 5xx answers (the daemon is down or
// restarting) every 20 ms with the same client id, until deadline. A 4xx is not
// retried. It returns the answer and how many POSTs it took.
func sendID(d *daemontest.Daemon, chat, text, id string, deadline time.Time) (api.Accepted, int, error) {
	var last string
	for tries := 1; ; tries++ {
		st, data, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: chat, Text: text, ClientID: id})
		switch {
		case err != nil:
			last = err.Error()
		case st == http.StatusAccepted:
			var acc api.Accepted
			if err := json.Unmarshal(data, &acc); err != nil {
				return acc, tries, fmt.Errorf("POST %s: bad answer %q: %w", id, data, err)
			}
			if acc.ID == "" || acc.ID == id {
				return acc, tries, fmt.Errorf("POST %s: answered id %q, want an id of dispatch's own", id, acc.ID)
			}
			return acc, tries, nil
		case st >= 500:
			last = fmt.Sprintf("HTTP %d: %s", st, data)
		default:
			return api.Accepted{}, tries, fmt.Errorf("POST %s: HTTP %d: %s", id, st, data)
		}
		if time.Now().After(deadline) {
			return api.Accepted{}, tries, fmt.Errorf("POST %s: not accepted after %d tries; last: %s", id, tries, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one sample of /metrics: the value of the line whose name
// and labels are exactly series (e.g. `dispatch_health_checks_total` or
// `dispatch_turn_duration_seconds_count{outcome="outage"}`); 0 if absent.
func metric(t *testing.T, d *daemontest.Daemon, series string) float64 {
	t.Helper()
	st, data := d.Get("/metrics")
	if st != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d", st)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", series, val, err)
			}
			return f
		}
	}
	return 0
}

// waitAllDone polls until no message is pending or in flight and every id
// is done (failing at once if one is dead), then returns the status.
func waitAllDone(t *testing.T, d *daemontest.Daemon, ids []string, timeout time.Duration) supervisor.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var s supervisor.Status
	for {
		s = d.Status()
		if s.Queue.Dead > 0 {
			t.Fatalf("%d messages dead: %s", s.Queue.Dead, deadList(t, d))
		}
		if s.Queue.Pending == 0 && s.Queue.Inflight == 0 && s.Queue.Done >= len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all %d messages done within %s: queue %+v, api %s", len(ids), timeout, s.Queue, s.Daemon.API)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		if m := d.Message(id); m.State != "done" {
			t.Errorf("message %s (chat %s): state %s, attempts %d, error %q; want done", id, m.ChatID, m.State, m.Attempts, m.Error)
		}
	}
	return s
}

func deadList(t *testing.T, d *daemontest.Daemon) string {
	t.Helper()
	_, data := d.Get("/v1/queue?state=dead")
	return string(data)
}

// checkSessionsClean asserts that every session has error_count 0, no
// automatic restart and is not failed, and that the lifecycle log has no
// restart, failure or dead_letter line.
func checkSessionsClean(t *testing.T, d *daemontest.Daemon, s supervisor.Status) {
	t.Helper()
	for _, ss := range s.Sessions {
		if ss.ErrorCount != 0 || ss.Restarts != 0 || ss.State == "failed" {
			t.Errorf("session %s: error_count %d, restarts %d, state %s (%s); want 0, 0, not failed",
				ss.ChatID, ss.ErrorCount, ss.Restarts, ss.State, ss.HealthReason)
		}
	}
	for _, e := range d.Lifecycle() {
		switch e.Event {
		case "restart", "failure", "dead_letter", "panic":
			t.Errorf("unexpected lifecycle event: %s", e.Line)
		}
	}
}

// lifecycleSummary counts lifecycle events by name, for the test log.
func lifecycleSummary(d *daemontest.Daemon) map[string]int {
	out := map[string]int{}
	for _, e := range d.Lifecycle() {
		out[e.Event]++
	}
	return out
}

// dumpOnFailure registers a cleanup that, when the test failed, logs the
// tail of the manager log and of each chat's session log (the harness logs
// the daemon's output and the lifecycle log itself). Register it after the
// daemon is created, so that it runs before the state dir is removed.
func dumpOnFailure(t *testing.T, d *daemontest.Daemon, chats ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if dir := os.Getenv("DURABILITY_KEEP_LOGS"); dir != "" {
			dst := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
			_ = os.RemoveAll(dst)
			if err := copyFiles(dst, d.Base); err != nil {
				t.Logf("copy %s to %s: %v", d.Base, dst, err)
			} else {
				t.Logf("daemon files copied to %s", dst)
			}
		}
		t.Logf("manager log:\n%s", tailString(d.ManagerLog(), 12000))
		for _, c := range chats {
			b, _ := os.ReadFile(filepath.Join(d.StateDir, "logs", "sessions", c+".log"))
			t.Logf("session log %s:\n%s", c, tailString(string(b), 6000))
		}
	})
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// copyFiles copies the regular files under src to dst (sockets and other
// special files are skipped).
func copyFiles(dst, src string) error {
	return filepath.WalkDir(src, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case e.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
}

// stdinRecorder runs every agent through a wrapper that copies the agent's
// stdin, line by line, into a file of its own under Dir before the stub
// reads it: a record of exactly what reached each agent process, including
// turns that failed (the stub's saved conversations hold only successful
// turns). The wrapper execs the stub, so the agent process is the stub
// itself; only the copying tee is an extra process in its group.
type stdinRecorder struct {
	Dir string
}

// newStdinRecorder writes the wrapper and returns the recorder and the
// config keys that make the daemon use it.
func newStdinRecorder(t *testing.T) (*stdinRecorder, map[string]any) {
	t.Helper()
	_, stub := daemontest.Binaries(t)
	base := t.TempDir()
	r := &stdinRecorder{Dir: filepath.Join(base, "stdin")}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One file per agent process, named by start time (then pid) so that
	// sorting the names gives the order the agents were started in.
	wrapper := daemontest.WriteScript(t, filepath.Join(base, "agent.sh"), `#!/bin/bash
f="$DURABILITY_STDIN_DIR/$(date +%s%N)-$$.jsonl"
exec "$DURABILITY_STUB" "$@" < <(exec tee -a "$f")
`)
	return r, map[string]any{
		"agent.command":                  wrapper,
		"agent.env.DURABILITY_STUB":      stub,
		"agent.env.DURABILITY_STDIN_DIR": r.Dir,
	}
}

// Lines are the texts of every user line any agent received, agent by
// agent in start order, each line's text blocks in order.
func (r *stdinRecorder) Lines(t *testing.T) [][]string {
	t.Helper()
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	var out [][]string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(r.Dir, n))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			texts, err := userTexts([]byte(line))
			if err != nil {
				// A line cut short by a kill: the agent did not get it whole.
				t.Logf("stdin record %s: %v: %.200q", n, err, line)
				continue
			}
			out = append(out, texts)
		}
	}
	return out
}

// Deliveries is, per chat, the message numbers (msgText) in the order they
// reached an agent's stdin, repeats included.
func (r *stdinRecorder) Deliveries(t *testing.T) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, texts := range r.Lines(t) {
		for _, s := range texts {
			for _, part := range strings.Split(s, "\n") {
				if chat, idx, ok := parseText(part); ok {
					out[chat] = append(out[chat], idx)
				}
			}
		}
	}
	return out
}

// userTexts extracts the text blocks of one stream-json user line.
func userTexts(line []byte) ([]string, error) {
	var msg struct {
		Type    string `json:"type"`
		Message struct {
			Content json.RawMessage `json:"content"`
		} `json:"message"`
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return nil, err
	}
	if msg.Type != "user" {
		return nil, fmt.Errorf("line of type %q", msg.Type)
	}
	var s string
	if json.Unmarshal(msg.Message.Content, &s) == nil {
		return []string{s}, nil
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(msg.Message.Content, &blocks); err != nil {
		return nil, err
	}
	var out []string
	for _, b := range blocks {
		if b.Type == "text" {
			out = append(out, b.Text)
		}
	}
	return out, nil
}

// checkOrderIn asserts, for every chat in want, that the first occurrences
// in got (per chat, in delivery order) are exactly want[chat], and that got
// has no other chat; it returns the number of repeats. what names the
// record (for messages).
func checkOrderIn(t *testing.T, what string, got, want map[string][]int) int {
	t.Helper()
	repeats := 0
	for chat, w := range want {
		seq := got[chat]
		first := firstDelivery(seq)
		repeats += len(seq) - len(first)
		if !slices.Equal(first, w) {
			t.Errorf("%s, chat %s: first-delivery order %v\nwant (send order) %v\nall deliveries %v", what, chat, first, w, seq)
		}
	}
	for chat := range got {
		if _, ok := want[chat]; !ok {
			t.Errorf("%s: messages of chat %q that was never sent to: %v", what, chat, got[chat])
		}
	}
	return repeats
}
