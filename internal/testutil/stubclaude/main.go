// Command stubclaude imitates the Claude Code CLI's stream-json print mode so
// that dispatch's driver and daemon can be tested without the real CLI or an
// API. It is built by tests (go build) and run in place of `claude`:
//
//	stubclaude -p --input-format stream-json --output-format stream-json --verbose \
//		[--resume ID | --session-id ID] [other args are ignored]
//
// Each stdin line is one user message, {"type":"user","message":{"role":"user",
// "content":[{"type":"text","text":"..."}]}} (content may be a plain string).
// Each is answered with a system/init line, an assistant line and a result
// line whose result is "echo: <text blocks joined by \n> (turn N)", N counting
// the user messages of the whole conversation, resumed history included. The
// history of session ID lives in $STUB_STATE_DIR/ID.json, so --resume ID
// continues it; --resume of an unknown ID answers a "No conversation found"
// error result and exits 1, like the CLI. Like the CLI, a turn that failed
// at the API (OUTAGE, OVERLOADED, the outage file) stays in the history;
// other failed turns do not. With --no-session-persistence nothing is saved.
//
// Directives anywhere in a message's text:
//
//	CRASH        exit 3 right after the init line, without a result (a note goes to stderr)
//	HANG         never answer; sleep until killed (first creating
//	             $STUB_HANG_FILE, if set, so a test knows the turn was read)
//	ERROR        error result: subtype error_during_execution, result "stub error"
//	OUTAGE       error result, api_error_status null, "API Error: Unable to connect to API (ConnectionRefused)"
//	OVERLOADED   error result, api_error_status 529, an overloaded_error body
//	RETRYING     before an OUTAGE or OVERLOADED error result, two
//	             system/api_retry lines 100ms apart, as the CLI prints while
//	             it retries (without it the stub fails at once, like the CLI
//	             with CLAUDE_CODE_MAX_RETRIES=0)
//	TOOLONG      error result, api_error_status 400, terminal_reason prompt_too_long
//	GROW=<size>  allocate <size> more memory (e.g. 200MB; KB, MB, GB are powers of
//	             1024, a bare number is bytes), touch every page so that it is
//	             resident, and keep it for the life of the process; done before
//	             SLEEP, so "GROW=300MB SLEEP=30s" holds the memory mid-turn
//	SLEEP=<dur>  wait <dur> (Go syntax) before answering
//	BIGLINE=<n>  the assistant line carries n bytes of text
//	UNKNOWN      also emit a line of an unknown type and a non-JSON line
//	DIE          exit 4 at once, before any output (the message killed it)
//	SILENT       the init line, then nothing: like the CLI when the API hangs
//	STDERRLOOP   the init line, then a stderr line every 50ms, never a result
//	EXTRA        answer, then 300ms later print a second, stray result
//	EXIT0        answer, then exit 0
//	DAEMONIZE    answer, then leave a child in a session of its own (setsid)
//	             that holds stdout and stderr open for 3s (its pid appended to
//	             $STUB_STATE_DIR/children.pids), and exit 0
//	CLOSEIN      answer, then close stdin and keep running (never reads again)
//	DEAF         answer, then never read stdin again, keeping it open (like
//	             an agent that is "exec sleep 100000")
//	STICKY       this and every later turn of the conversation fail with a
//	             timeout error result (api_error_status null): a conversation
//	             whose every request times out
//	NOCONV       error result whose errors merely mention "No conversation
//	             found" (a tool's error about a ticket)
//	NOCONVSTDERR write "No conversation found" to stderr, then answer
//	FETCH=<sock>,<path>       GET path on the unix socket sock (a prompt-injected
//	                          agent trying the control API); the reply ends with
//	                          " fetched: <status> <body>"
//	FETCHCHILD=<sock>,<path>  the same from a child that left the agent's process
//	                          group (setsid) and has an empty environment
//	FETCHPG=<pgid>,<sock>,<path>  the same from a child that first tries to join
//	                          process group pgid (setpgid: another agent's group);
//	                          the reply ends with " fetched: [setpgid: <err>] <status> <body>"
//	SH=<base64>               run the decoded text with /bin/sh -c (a tool call);
//	                          the reply ends with " sh: <exit status> <output>"
//
// Environment knobs:
//
//	STUB_STATE_DIR        where conversations are kept (default: the OS temp dir)
//	STUB_HANG_FILE=FILE   created when a HANG turn has been read and hangs
//	STUB_ARGS_LOG=FILE    append one JSON record per invocation: argv, pid, cwd,
//	                      CLAUDECODE (and whether it was set), and the variables
//	                      named in STUB_LOG_ENV
//	STUB_LOG_ENV=A,B      environment variables to copy into the args log record
//	STUB_OUTAGE_FILE=FILE while FILE exists every turn answers the OUTAGE result
//	STUB_POISON_FILE=FILE while FILE exists a message containing POISON crashes
//	                      the stub like CRASH (a poison message that a retry
//	                      can cure by removing FILE)
//	STUB_SILENT_FILE=FILE while FILE exists every turn is SILENT (the API hangs
//	                      for everyone, probes included)
//	STUB_SPAWN_CHILD=1    start `sleep 1000` in the same process group, holding
//	                      stdout and stderr, and append its pid to
//	                      $STUB_STATE_DIR/children.pids
//	STUB_CRASH_ON_START=1 exit 2 at once
//	STUB_IGNORE_TERM=1    ignore SIGTERM (so only SIGKILL ends the stub)
//	STUB_RESUME_NEW_ID=1  on --resume, report a different session_id in the
//	                      init and result lines (the CLI may fork on resume)
//	STUB_LATE_TRANSCRIPT=D  like the CLI, write a turn's entries D after its
//	                      result line: the assistant line carries a uuid, and
//	                      only D after the result is the conversation saved and
//	                      {"uuid":...} appended to <conversation>.entries.jsonl
//	STUB_TURN_LOG=FILE    append "start|tick|finish <pid> <unix ns> <text>" lines:
//	                      when a turn is read, every 50ms of its SLEEP, and
//	                      when it was answered
//	STUB_PROJECTS=1       keep conversations where the CLI does instead:
//	                      $CLAUDE_CONFIG_DIR (or $HOME/.claude)/projects/<working
//	                      directory with non-alphanumerics as ->/ID.jsonl, so
//	                      that --resume finds one only from the same directory
//
// SIGPIPE is ignored: when the reader goes away, writes fail and the stub
// exits quietly.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/dispatchd/dispatch/internal/agent/claude"
)

const (
	outageText     = "API Error: Unable to connect to API (ConnectionRefused)"
	overloadedText = `API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
)

var (
	sleepRe   = regexp.MustCompile(`SLEEP=(\S+)`)
	biglineRe = regexp.MustCompile(`BIGLINE=(\d+)`)
	growRe    = regexp.MustCompile(`GROW=(\d+)([KMG]B)?`)
	// ballast is what GROW allocated: kept, so it stays resident.
	ballast   [][]byte
	fetchRe   = regexp.MustCompile(`FETCH(CHILD)?=(\S+),(\S+)`)
	fetchPGRe = regexp.MustCompile(`FETCHPG=(\d+),(\S+),(\S+)`)
	shRe      = regexp.MustCompile(`SH=([A-Za-z0-9+/=]+)`)
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "--fetch" {
		fmt.Print(fetch(os.Args[2], os.Args[3]))
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "--fetch-pg" {
		pg, _ := strconv.Atoi(os.Args[2])
		if err := syscall.Setpgid(0, pg); err != nil {
			fmt.Printf("[setpgid: %v] ", err)
		}
		fmt.Print(fetch(os.Args[3], os.Args[4]))
		return
	}
	signal.Ignore(syscall.SIGPIPE)
	if os.Getenv("STUB_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	logArgs()
	if os.Getenv("STUB_CRASH_ON_START") == "1" {
		fmt.Fprintln(os.Stderr, "stubclaude: crash on start")
		os.Exit(2)
	}

	resume, id := parseArgs(os.Args[1:])
	if id == "" {
		id = uuid.NewString()
	}
	s := &stub{id: id, reportID: id, out: bufio.NewWriterSize(os.Stdout, 64<<10),
		ephemeral: slices.Contains(os.Args[1:], "--no-session-persistence")}
	if resume {
		h, err := loadHistory(id)
		if err != nil {
			s.emit(map[string]any{
				"type": "result", "subtype": "error_during_execution", "is_error": true,
				"duration_ms": 0, "num_turns": 0, "session_id": id,
				"errors": []string{"No conversation found with session ID: " + id},
			})
			os.Exit(1)
		}
		s.history = h
		if os.Getenv("STUB_RESUME_NEW_ID") == "1" {
			s.reportID = uuid.NewString()
		}
	}
	if os.Getenv("STUB_SPAWN_CHILD") == "1" {
		spawnChild()
	}

	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			s.turn(line)
		}
		if err != nil {
			return // EOF: stdin closed, exit 0 like the CLI
		}
	}
}

// stub is one conversation.
type stub struct {
	id       string // the conversation (state file) id
	reportID string // the id reported on output lines
	history  []string
	out      *bufio.Writer
	// ephemeral (--no-session-persistence) conversations are never saved
	ephemeral bool
}

// turn answers one stdin line.
func (s *stub) turn(line []byte) {
	text, err := userText(line)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: bad input line:", err)
		s.emit(result(s.reportID, "error_during_execution", true, "stub: bad input: "+err.Error(), 0, nil))
		return
	}
	start := time.Now()
	logTurn("start", text)
	defer logTurn("finish", text)
	if strings.Contains(text, "HANG") {
		if f := os.Getenv("STUB_HANG_FILE"); f != "" {
			_ = os.WriteFile(f, nil, 0o644)
		}
		for { // until killed; select{} would trip the runtime's deadlock check
			time.Sleep(time.Hour)
		}
	}
	if m := growRe.FindStringSubmatch(text); m != nil {
		grow(m[1], m[2])
	}
	if strings.Contains(text, "DIE") {
		os.Exit(4)
	}
	if m := sleepRe.FindStringSubmatch(text); m != nil {
		if d, err := time.ParseDuration(m[1]); err == nil {
			for end := time.Now().Add(d); time.Now().Before(end); {
				time.Sleep(min(50*time.Millisecond, time.Until(end)))
				logTurn("tick", text)
			}
		}
	}
	s.emit(map[string]any{
		"type": "system", "subtype": "init", "session_id": s.reportID,
		"cwd": cwd(), "model": "stub", "tools": []string{}, "permissionMode": "default",
		"apiKeySource": "none",
	})

	silent := false
	if sf := os.Getenv("STUB_SILENT_FILE"); sf != "" {
		_, err := os.Stat(sf)
		silent = err == nil
	}
	if silent || strings.Contains(text, "SILENT") {
		for {
			time.Sleep(time.Hour)
		}
	}
	if strings.Contains(text, "STDERRLOOP") {
		for {
			fmt.Fprintln(os.Stderr, "stubclaude: still working")
			time.Sleep(50 * time.Millisecond)
		}
	}
	if strings.Contains(text, "NOCONVSTDERR") {
		fmt.Fprintln(os.Stderr, "mcp: No conversation found with session ID: 1234")
	}
	poisoned := false
	if pf := os.Getenv("STUB_POISON_FILE"); pf != "" && strings.Contains(text, "POISON") {
		_, err := os.Stat(pf)
		poisoned = err == nil
	}
	if poisoned || strings.Contains(text, "CRASH") {
		// after init, like the real CLI, which acknowledges a turn before
		// working on it: the crash is this message's doing
		fmt.Fprintln(os.Stderr, "stubclaude: crashing on CRASH directive")
		os.Exit(3)
	}

	ms := func() int64 { return time.Since(start).Milliseconds() }
	// Like the real CLI, a turn that failed at the API stays in the
	// conversation: its text is kept and goes out again with the next one.
	if of := os.Getenv("STUB_OUTAGE_FILE"); of != "" {
		if _, err := os.Stat(of); err == nil {
			s.keep(text)
			s.fail(outageText, nil, "", ms())
			return
		}
	}
	if strings.Contains(text, "STICKY") || slices.ContainsFunc(s.history, func(h string) bool { return strings.Contains(h, "STICKY") }) {
		s.keep(text)
		s.fail("API Error: Request timed out.", nil, "", ms())
		return
	}
	switch {
	case strings.Contains(text, "NOCONV") && !strings.Contains(text, "NOCONVSTDERR"):
		r := result(s.reportID, "error_during_execution", true, "", ms(), nil)
		r["errors"] = []string{"Tool ticket_lookup: No conversation found for ticket #4711"}
		s.emit(r)
		return
	case strings.Contains(text, "OVERLOADED"):
		s.keep(text)
		s.retrying(text, intp(529), "overloaded")
		s.fail(overloadedText, intp(529), "", ms())
		return
	case strings.Contains(text, "OUTAGE"):
		s.keep(text)
		s.retrying(text, nil, "unknown")
		s.fail(outageText, nil, "", ms())
		return
	case strings.Contains(text, "TOOLONG"):
		s.fail("Prompt is too long", intp(400), "prompt_too_long", ms())
		return
	case strings.Contains(text, "ERROR"):
		s.emit(result(s.reportID, "error_during_execution", true, "stub error", ms(), nil))
		return
	}

	late := lateTranscript()
	if late > 0 {
		s.history = append(s.history, text) // saved after the result, below
	} else {
		s.keep(text)
	}
	reply := fmt.Sprintf("echo: %s (turn %d)", text, len(s.history))
	if m := fetchPGRe.FindStringSubmatch(text); m != nil {
		reply += " fetched: " + runSelf("--fetch-pg", m[1], m[2], m[3])
	} else if m := fetchRe.FindStringSubmatch(text); m != nil {
		reply += " fetched: " + fetchAs(m[1] != "", m[2], m[3])
	}
	if m := shRe.FindStringSubmatch(text); m != nil {
		reply += " sh: " + runShell(m[1])
	}
	body := reply
	if m := biglineRe.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		body = strings.Repeat("x", n)
	}
	a := assistant(s.reportID, body)
	entry := uuid.NewString()
	if late > 0 {
		a["uuid"] = entry
	}
	s.emit(a)
	if strings.Contains(text, "UNKNOWN") {
		s.emit(map[string]any{"type": "stub_mystery", "session_id": s.reportID, "data": []int{1, 2, 3}})
		s.raw("this line is not JSON")
	}
	r := result(s.reportID, "success", false, reply, ms(), nil)
	r["num_turns"] = len(s.history)
	s.emit(r)
	if late > 0 {
		// like the CLI, whose last entries of a turn land after its result
		time.Sleep(late)
		if err := saveHistory(s.id, s.history); err != nil {
			fmt.Fprintln(os.Stderr, "stubclaude: save:", err)
		}
		appendEntry(s.id, entry)
	}
	switch {
	case strings.Contains(text, "EXTRA"):
		time.Sleep(300 * time.Millisecond)
		s.emit(result(s.reportID, "success", false, "stray result", ms(), nil))
	case strings.Contains(text, "DAEMONIZE"):
		s.out.Flush()
		daemonize()
		os.Exit(0)
	case strings.Contains(text, "EXIT0"):
		os.Exit(0)
	case strings.Contains(text, "DEAF"):
		for {
			time.Sleep(time.Hour)
		}
	case strings.Contains(text, "CLOSEIN"):
		os.Stdin.Close()
		for {
			time.Sleep(time.Hour)
		}
	}
}

// keep adds text to the conversation and saves it (unless ephemeral).
func (s *stub) keep(text string) {
	s.history = append(s.history, text)
	if s.ephemeral {
		return
	}
	if err := saveHistory(s.id, s.history); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: save:", err)
	}
}

// fail answers an API error the way the CLI does: a synthetic assistant
// message carrying the error text, then an error result.
func (s *stub) fail(text string, status *int, terminal string, ms int64) {
	s.emit(assistant(s.reportID, text))
	r := result(s.reportID, "success", true, text, ms, status)
	if terminal != "" {
		r["terminal_reason"] = terminal
	}
	s.emit(r)
}

// retrying prints the CLI's system/api_retry lines for a RETRYING turn.
func (s *stub) retrying(text string, status *int, why string) {
	if !strings.Contains(text, "RETRYING") {
		return
	}
	for attempt := 1; attempt <= 2; attempt++ {
		s.emit(map[string]any{
			"type": "system", "subtype": "api_retry", "attempt": attempt, "max_retries": 10,
			"retry_delay_ms": 100, "error_status": status, "error": why, "session_id": s.reportID,
		})
		time.Sleep(100 * time.Millisecond)
	}
}

// emit writes v as one JSON line and flushes it.
func (s *stub) emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.raw(string(b))
}

func (s *stub) raw(line string) {
	s.out.WriteString(line)
	s.out.WriteByte('\n')
	if err := s.out.Flush(); err != nil {
		os.Exit(0) // the reader is gone (EPIPE): nothing left to do
	}
}

func result(id, subtype string, isErr bool, text string, ms int64, status *int) map[string]any {
	return map[string]any{
		"type": "result", "subtype": subtype, "is_error": isErr, "result": text,
		"session_id": id, "duration_ms": ms, "duration_api_ms": ms, "num_turns": 1,
		"api_error_status": status, "total_cost_usd": 0,
	}
}

func assistant(id, text string) map[string]any {
	return map[string]any{
		"type": "assistant", "session_id": id,
		"message": map[string]any{
			"id": "msg_stub", "type": "message", "role": "assistant", "model": "stub",
			"content": []map[string]string{{"type": "text", "text": text}},
		},
	}
}

func intp(n int) *int { return &n }

// userText extracts the joined text blocks of one user line.
func userText(line []byte) (string, error) {
	var msg struct {
		Type    string `json:"type"`
		Message struct {
			Content json.RawMessage `json:"content"`
		} `json:"message"`
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return "", err
	}
	if msg.Type != "user" {
		return "", fmt.Errorf("unexpected type %q", msg.Type)
	}
	var s string
	if json.Unmarshal(msg.Message.Content, &s) == nil {
		return s, nil
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(msg.Message.Content, &blocks); err != nil {
		return "", err
	}
	var texts []string
	for _, b := range blocks {
		if b.Type == "text" {
			texts = append(texts, b.Text)
		}
	}
	return strings.Join(texts, "\n"), nil
}

// parseArgs finds --resume or --session-id (either "--flag v" or "--flag=v").
func parseArgs(args []string) (resume bool, id string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		for _, f := range []string{"--resume", "--session-id"} {
			var v string
			switch {
			case a == f && i+1 < len(args):
				i++
				v = args[i]
			case strings.HasPrefix(a, f+"="):
				v = strings.TrimPrefix(a, f+"=")
			default:
				continue
			}
			resume, id = f == "--resume", v
		}
	}
	return resume, id
}

func stateDir() string {
	if d := os.Getenv("STUB_STATE_DIR"); d != "" {
		return d
	}
	return os.TempDir()
}

func statePath(id string) string {
	if os.Getenv("STUB_PROJECTS") == "1" {
		// Like the CLI: under the config dir, in the folder of the
		// working directory, so --resume works only from the same one.
		slug, _ := claude.ProjectSlug(cwd())
		return filepath.Join(claude.ConfigDir(os.Environ()), "projects", slug, filepath.Base(id)+".jsonl")
	}
	return filepath.Join(stateDir(), filepath.Base(id)+".json")
}

func loadHistory(id string) ([]string, error) {
	b, err := os.ReadFile(statePath(id))
	if err != nil {
		return nil, err
	}
	var h []string
	return h, json.Unmarshal(b, &h)
}

func saveHistory(id string, h []string) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(statePath(id)), 0o755); err != nil {
		return err
	}
	tmp := statePath(id) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(id))
}

// logTurn appends "<what> <pid> <unix ns> <text>" to $STUB_TURN_LOG.
func logTurn(what, text string) {
	p := os.Getenv("STUB_TURN_LOG")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s %d %d %s\n", what, os.Getpid(), time.Now().UnixNano(), strings.ReplaceAll(text, "\n", " "))
	f.Close()
}

// lateTranscript is $STUB_LATE_TRANSCRIPT as a duration (0 when unset).
func lateTranscript() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("STUB_LATE_TRANSCRIPT"))
	return d
}

// appendEntry records a transcript entry with uuid u beside the
// conversation: <state path without .jsonl/.json>.entries.jsonl.
func appendEntry(id, u string) {
	p := strings.TrimSuffix(strings.TrimSuffix(statePath(id), ".jsonl"), ".json") + ".entries.jsonl"
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: entry:", err)
		return
	}
	fmt.Fprintf(f, "{\"type\":\"assistant\",\"uuid\":%q}\n", u)
	f.Close()
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}

// logArgs appends this invocation to $STUB_ARGS_LOG.
func logArgs() {
	path := os.Getenv("STUB_ARGS_LOG")
	if path == "" {
		return
	}
	cc, ccSet := os.LookupEnv("CLAUDECODE")
	rec := map[string]any{
		"argv": os.Args[1:], "pid": os.Getpid(), "cwd": cwd(),
		"claudecode": cc, "claudecode_set": ccSet,
	}
	if names := os.Getenv("STUB_LOG_ENV"); names != "" {
		env := map[string]string{}
		for _, n := range strings.Split(names, ",") {
			if v, ok := os.LookupEnv(n); ok {
				env[n] = v
			}
		}
		rec["env"] = env
	}
	b, _ := json.Marshal(rec)
	if err := appendLine(path, b); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: args log:", err)
	}
}

func appendLine(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return errors.Join(err, f.Close())
}

// spawnChild starts a long sleeper in our process group that holds our
// stdout and stderr, the way a tool subprocess of the CLI might.
func spawnChild() {
	c := exec.Command("sleep", "1000")
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: spawn child:", err)
		return
	}
	go c.Wait() //nolint:errcheck // reaped if it ever ends before us
	_ = os.MkdirAll(stateDir(), 0o755)
	if err := appendLine(filepath.Join(stateDir(), "children.pids"), []byte(strconv.Itoa(c.Process.Pid))); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: children.pids:", err)
	}
}

// daemonize leaves behind a child in a session (and process group) of its
// own that holds stdout and stderr open for a few seconds, as a tool that
// daemonizes a server does.
func daemonize() {
	c := exec.Command("sleep", "3")
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: daemonize:", err)
		return
	}
	_ = os.MkdirAll(stateDir(), 0o755)
	if err := appendLine(filepath.Join(stateDir(), "children.pids"), []byte(strconv.Itoa(c.Process.Pid))); err != nil {
		fmt.Fprintln(os.Stderr, "stubclaude: children.pids:", err)
	}
}

// grow allocates n units of memory and writes to every page of it, so the
// kernel counts it as resident.
func grow(n, unit string) {
	size, _ := strconv.ParseInt(n, 10, 64)
	switch unit {
	case "KB":
		size <<= 10
	case "MB":
		size <<= 20
	case "GB":
		size <<= 30
	}
	b := make([]byte, size)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	ballast = append(ballast, b)
}

// fetchAs GETs path on the unix socket sock, itself or (child) from a
// child process in a session of its own with an empty environment.
func fetchAs(child bool, sock, path string) string {
	if !child {
		return fetch(sock, path)
	}
	self, err := os.Executable()
	if err != nil {
		return "error: " + err.Error()
	}
	cmd := exec.Command(self, "--fetch", sock, path)
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.Output()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

// runSelf runs this binary with args as a child (same environment and
// process group) and returns its output.
func runSelf(args ...string) string {
	self, err := os.Executable()
	if err != nil {
		return "error: " + err.Error()
	}
	out, err := exec.Command(self, args...).Output()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

// runShell runs the base64-encoded script with /bin/sh -c: "<exit status> <output>".
func runShell(b64 string) string {
	script, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "error: " + err.Error()
	}
	out, err := exec.Command("/bin/sh", "-c", string(script)).CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%d %s", code, strings.TrimSpace(string(out)))
}

// fetch GETs path on the unix socket sock: "<status> <body>".
func fetch(sock, path string) string {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := c.Get("http://dispatch" + path)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}
