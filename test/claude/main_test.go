// Package claude runs the real dispatch daemon with the real Claude Code CLI
// (the pinned version that scripts/install-tools.sh puts in tools/) as its
// agent, against the fake Anthropic API of internal/fakeapi. Each test has
// its own fake and its own daemon, switches the fake between modes (ok,
// refused, 529, 401, prompt too long, hang) through its Go API and checks
// what dispatch makes of the CLI's real behaviour.
//
// Without the CLI the tests skip, unless DISPATCH_REQUIRE_CLAUDE=1 (CI),
// which turns the skip into a failure. DISPATCH_CLAUDE_BIN overrides the
// CLI's path.
package claude

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// turnTimeout bounds one message's way through a real CLI: a cold start
// takes 2–6 s on a loaded two-core machine, a warm turn well under one.
const turnTimeout = 60 * time.Second

// claudeBin returns the Claude Code CLI to test with: $DISPATCH_CLAUDE_BIN,
// else <module root>/tools/claude-code/node_modules/.bin/claude. When it is
// missing the test is skipped, or fails if DISPATCH_REQUIRE_CLAUDE=1.
func claudeBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DISPATCH_CLAUDE_BIN")
	if bin == "" {
		bin = filepath.Join(daemontest.ModuleRoot(t), "tools", "claude-code", "node_modules", ".bin", "claude")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("claude CLI not installed: run scripts/install-tools.sh (looked for %s)", bin)
		if os.Getenv("DISPATCH_REQUIRE_CLAUDE") == "1" {
			t.Fatal(msg + "; DISPATCH_REQUIRE_CLAUDE=1")
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("bwrap"); err != nil {
		msg := "bubblewrap (bwrap) not installed: the real CLI is tested sandboxed; run scripts/install-tools.sh as root"
		if os.Getenv("DISPATCH_REQUIRE_CLAUDE") == "1" {
			t.Fatal(msg + "; DISPATCH_REQUIRE_CLAUDE=1")
		}
		t.Skip(msg)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	return bin
}

// rig is one test's fake API and daemon running the real CLI.
type rig struct {
	t    *testing.T
	api  *fakeapi.Server
	d    *daemontest.Daemon
	home string // the CLI's HOME: its transcripts live under .claude/
}

// start starts a fake API (in mode, before the daemon starts) and a daemon
// whose agent is the real CLI pointed at it. set overrides config keys on
// top of the defaults below: timers that suit a CLI that needs seconds to
// start, and a CLI that gives up on a failed API call at once
// (CLAUDE_CODE_MAX_RETRIES=0) so that dispatch's own outage handling, not
// the CLI's minutes of retries, is what the tests see.
func start(t *testing.T, mode fakeapi.Mode, set map[string]any) *rig {
	t.Helper()
	return startYAML(t, mode, set, "")
}

// startYAML is start with a raw YAML mapping merged over the config (a
// channel, say).
func startYAML(t *testing.T, mode fakeapi.Mode, set map[string]any, yaml string) *rig {
	t.Helper()
	bin := claudeBin(t)
	s := fakeapi.New()
	s.SetMode(mode)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	// Registered before the daemon's cleanup, so it runs after it: the fake
	// must answer (or refuse) while the daemon shuts its agents down.
	t.Cleanup(func() { s.Close() })
	home := t.TempDir()
	cfg := cliConfig(bin, s.URL(), home)
	maps.Copy(cfg, set)
	r := &rig{t: t, api: s, home: home}
	r.d = daemontest.Start(t, daemontest.Options{Set: cfg, YAML: yaml})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fake API requests:\n%s", r.describeRequests())
			for _, f := range r.sessionLogs() {
				t.Logf("session log %s:\n%s", filepath.Base(f), tail(readFile(f), 6000))
			}
		}
	})
	return r
}

// --- messages and replies ---

// send accepts text for chat and returns its id.
func (r *rig) send(chat, text string) string {
	r.t.Helper()
	return r.d.Send(chat, text)
}

// done waits until message id is done and returns it.
func (r *rig) done(id string) api.MessageOut {
	r.t.Helper()
	return r.d.WaitMessage(id, "done", turnTimeout)
}

// ask sends text and waits for its reply.
func (r *rig) ask(chat, text string) string {
	r.t.Helper()
	return r.done(r.send(chat, text)).Reply
}

var replyRE = regexp.MustCompile(`^fake reply #(\d+) to: `)

// replyN is N of the fake's "fake reply #N to: …": the number of user
// messages the CLI sent, so N > 1 proves it sent an earlier conversation.
func replyN(t *testing.T, reply string) int {
	t.Helper()
	m := replyRE.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("reply %q is not the fake's", reply)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// wantReply checks that reply answers text (the fake quotes the last user
// text) as user turn N.
func wantReply(t *testing.T, reply, text string, n int) {
	t.Helper()
	if want := fmt.Sprintf("fake reply #%d to: %s", n, text); reply != want {
		t.Errorf("reply %q, want %q", reply, want)
	}
}

// --- the fake's records ---

// userTexts are the texts the user typed in a request, in order: every
// text block of every user message, without the <system-reminder> blocks
// Claude Code adds and with the newline it puts after a text that was
// followed by another one.
func userTexts(rec fakeapi.Recorded) []string {
	var out []string
	if rec.Request == nil {
		return nil
	}
	for _, m := range rec.Request.Messages {
		if m.Role != "user" {
			continue
		}
		for _, b := range m.Content {
			txt := strings.TrimSpace(b.Text)
			if b.Type != "text" || txt == "" || strings.HasPrefix(txt, "<system-reminder>") {
				continue
			}
			out = append(out, txt)
		}
	}
	return out
}

// requestsIn are the recorded POST /v1/messages answered in mode.
func (r *rig) requestsIn(mode fakeapi.Mode) []fakeapi.Recorded {
	var out []fakeapi.Recorded
	for _, rec := range r.api.Requests() {
		if rec.Mode == mode {
			out = append(out, rec)
		}
	}
	return out
}

// requestFor is the last request whose last user text is text.
func (r *rig) requestFor(text string) (fakeapi.Recorded, bool) {
	reqs := r.api.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Request != nil && reqs[i].Request.LastUserText() == text {
			return reqs[i], true
		}
	}
	return fakeapi.Recorded{}, false
}

func (r *rig) describeRequests() string {
	var b strings.Builder
	for i, rec := range r.api.Requests() {
		fmt.Fprintf(&b, "%2d %s %-12s %s?%s users=%q\n", i+1, rec.Time.Format("15:04:05.000"), rec.Mode, rec.Path, rec.Query, userTexts(rec))
	}
	return b.String()
}

// --- status, processes, logs ---

// session is chat's status entry, or the zero value if it has none.
func (r *rig) session(chat string) supervisor.SessionStatus {
	r.t.Helper()
	s, _ := r.d.Session(chat)
	return s
}

// idle waits until chat's session is idle (its status is published a
// moment after a turn's reply is stored) and returns its status.
func (r *rig) idle(chat string) supervisor.SessionStatus {
	r.t.Helper()
	var s supervisor.SessionStatus
	r.d.WaitFor(func() bool { s = r.session(chat); return s.State == "idle" && !s.Busy }, turnTimeout, chat+" idle")
	return s
}

// statusCLI is `dispatch status --json`, through the CLI.
func (r *rig) statusCLI() supervisor.Status {
	r.t.Helper()
	out, errOut, code := r.d.Run("status", "--json")
	if code != 0 {
		r.t.Fatalf("dispatch status --json: exit %d: %s%s", code, out, errOut)
	}
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		r.t.Fatalf("dispatch status --json: %v\n%s", err, out)
	}
	return st
}

// argv is the command line of a live process.
func argv(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// flagValue is the value of --name in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// wantArgv checks the CLI's command line: the stream-json flags, and either
// --resume id or --session-id id.
func (r *rig) wantArgv(pid int, resume bool, id string) {
	r.t.Helper()
	args := argv(pid)
	if len(args) == 0 {
		r.t.Errorf("pid %d: no command line (process gone?)", pid)
		return
	}
	if joined := strings.Join(args, " "); !strings.Contains(joined, "-p --input-format stream-json --output-format stream-json --verbose") {
		r.t.Errorf("pid %d argv %q: no stream-json flags", pid, args)
	}
	got, hasResume := flagValue(args, "--resume")
	sid, hasSID := flagValue(args, "--session-id")
	switch {
	case resume && (!hasResume || got != id || hasSID):
		r.t.Errorf("pid %d argv %q: want --resume %s and no --session-id", pid, args, id)
	case !resume && (hasResume || !hasSID || sid != id):
		r.t.Errorf("pid %d argv %q: want --session-id %s and no --resume", pid, args, id)
	}
}

// transcript is the CLI's saved conversation file for session id, if any.
func (r *rig) transcript(id string) (string, bool) {
	m, _ := filepath.Glob(filepath.Join(r.home, ".claude", "projects", "*", id+".jsonl"))
	if len(m) == 0 {
		return "", false
	}
	return m[0], true
}

func (r *rig) sessionLogs() []string {
	m, _ := filepath.Glob(filepath.Join(r.d.StateDir, "logs", "sessions", "*.log"))
	return m
}

// sessionLog is the text of chat's session log.
func (r *rig) sessionLog(chat string) string {
	return readFile(filepath.Join(r.d.StateDir, "logs", "sessions", chat+".log"))
}

// healthChecks counts the health checks in the manager log.
func (r *rig) healthChecks() int {
	return strings.Count(r.d.ManagerLog(), `msg="health check"`)
}

// waitChecks waits until n more health checks have run.
func (r *rig) waitChecks(n int) {
	r.t.Helper()
	from := r.healthChecks()
	r.d.WaitFor(func() bool { return r.healthChecks() >= from+n }, 30*time.Second, fmt.Sprintf("%d health checks", n))
}

// events lists chat's lifecycle events (all of them when event is "").
func (r *rig) events(chat, event, reasonPart string) []daemontest.LifecycleEvent {
	return r.d.Events(chat, event, reasonPart)
}

// noOrphanKills fails if dispatch killed any process of the CLI as an
// orphan: the CLI's own children must count as the session's.
func (r *rig) noOrphanKills() {
	r.t.Helper()
	for _, e := range r.d.Lifecycle() {
		if e.Event == "orphan_killed" {
			r.t.Errorf("dispatch killed a CLI process as an orphan: %s", e.Line)
		}
	}
}

// inOrder checks that each of texts first appears in seq after the one
// before it.
func inOrder(t *testing.T, what string, seq []string, texts ...string) {
	t.Helper()
	last := -1
	for _, txt := range texts {
		i := slices.Index(seq, txt)
		if i < 0 {
			t.Errorf("%s: %q missing from %q", what, txt, seq)
			return
		}
		if i < last {
			t.Errorf("%s: %q out of order in %q", what, txt, seq)
			return
		}
		last = i
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// cliConfig is the config of a daemon that drives the real CLI at bin
// against the fake API at apiURL, with its own home folder (where the CLI
// keeps its conversations) and timers short enough for tests.
func cliConfig(bin, apiURL, home string) map[string]any {
	return map[string]any{
		"agent.command":                                      bin,
		"agent.stop_grace":                                   "2s",
		"agent.env.ANTHROPIC_BASE_URL":                       apiURL,
		"agent.env.ANTHROPIC_API_KEY":                        "sk-ant-dummy-for-the-fake-api",
		"agent.env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"agent.env.DISABLE_AUTOUPDATER":                      "1",
		"agent.env.CLAUDE_CODE_MAX_RETRIES":                  "0",
		"agent.env.API_TIMEOUT_MS":                           "60000",
		"agent.env.HOME":                                     home,
		"agent.env.XDG_CONFIG_HOME":                          filepath.Join(home, ".config"),
		// The real CLI runs sandboxed in every test here: resume, outages,
		// the conversation's move between nodes and into the chat's folder
		// are all checked inside the sandbox.
		"agent.sandbox.mode":              "on",
		"health.check_interval":           "500ms",
		"health.first_check_delay":        "500ms",
		"health.stuck_timeout":            "20s",
		"health.first_turn_stuck_timeout": "40s",
		"health.idle_timeout":             "10m",
		"shutdown_timeout":                "10s",
	}
}
