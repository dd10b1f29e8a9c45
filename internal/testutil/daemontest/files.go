package daemontest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/daemon"
	"github.com/dispatchd/dispatch/internal/supervisor"
)

// --- logs ---

// LifecyclePath is logs/session_lifecycle.log.
func (d *Daemon) LifecyclePath() string {
	return filepath.Join(d.StateDir, "logs", "session_lifecycle.log")
}

// ManagerPath is logs/manager.log.
func (d *Daemon) ManagerPath() string {
	return filepath.Join(d.StateDir, "logs", "manager.log")
}

// LifecycleEvent is one line of the lifecycle log.
type LifecycleEvent struct {
	Time   time.Time
	Level  string
	Event  string
	Chat   string
	Reason string
	Line   string
}

func (e LifecycleEvent) String() string { return e.Line }

// Lifecycle parses logs/session_lifecycle.log (slog text lines).
func (d *Daemon) Lifecycle() []LifecycleEvent {
	var out []LifecycleEvent
	for _, line := range lines(readFile(d.LifecyclePath())) {
		kv := ParseLogfmt(line)
		ts, _ := time.Parse(time.RFC3339Nano, kv["time"])
		out = append(out, LifecycleEvent{
			Time: ts, Level: kv["level"], Event: kv["event"], Chat: kv["chat"], Reason: kv["reason"], Line: line,
		})
	}
	return out
}

// Events are the lifecycle events of chat with the given event name ("" for
// any) whose reason contains reasonPart.
func (d *Daemon) Events(chat, event, reasonPart string) []LifecycleEvent {
	var out []LifecycleEvent
	for _, e := range d.Lifecycle() {
		if e.Chat == chat && (event == "" || e.Event == event) && strings.Contains(e.Reason, reasonPart) {
			out = append(out, e)
		}
	}
	return out
}

// ManagerLog is the text of logs/manager.log.
func (d *Daemon) ManagerLog() string { return readFile(d.ManagerPath()) }

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// ParseLogfmt splits one slog text line into its keys and values (quoted
// values are unquoted; a repeated key keeps its last value).
func ParseLogfmt(line string) map[string]string {
	out := map[string]string{}
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		key := line[i : i+eq]
		i += eq + 1
		if i < len(line) && line[i] == '"' {
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				j = len(line) - 1
			}
			v, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				v = line[i : j+1]
			}
			out[key] = v
			i = j + 1
			continue
		}
		j := strings.IndexByte(line[i:], ' ')
		if j < 0 {
			j = len(line) - i
		}
		out[key] = line[i : i+j]
		i += j
	}
	return out
}

// --- the stub's records ---

// Invocation is one start of the stub CLI, from its args log.
type Invocation struct {
	Argv          []string          `json:"argv"`
	Pid           int               `json:"pid"`
	Cwd           string            `json:"cwd"`
	ClaudeCode    string            `json:"claudecode"`
	ClaudeCodeSet bool              `json:"claudecode_set"`
	Env           map[string]string `json:"env"`
}

// Flag is the value of --name in the argv ("" when absent).
func (iv Invocation) Flag(name string) string {
	for i, a := range iv.Argv {
		if a == name && i+1 < len(iv.Argv) {
			return iv.Argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// Resume is the --resume id, SessionID the --session-id id.
func (iv Invocation) Resume() string    { return iv.Flag("--resume") }
func (iv Invocation) SessionID() string { return iv.Flag("--session-id") }

// Invocations reads the stub's args log, oldest first.
func (d *Daemon) Invocations() []Invocation {
	d.t.Helper()
	var out []Invocation
	for _, l := range lines(readFile(d.ArgsLog)) {
		var iv Invocation
		if err := json.Unmarshal([]byte(l), &iv); err != nil {
			d.t.Fatalf("args log line %q: %v", l, err)
		}
		out = append(out, iv)
	}
	return out
}

// InvocationsFor are the invocations that started or resumed session id.
func (d *Daemon) InvocationsFor(id string) []Invocation {
	d.t.Helper()
	var out []Invocation
	for _, iv := range d.Invocations() {
		if iv.Resume() == id || iv.SessionID() == id {
			out = append(out, iv)
		}
	}
	return out
}

// Conversation is the stub's saved history of session id: one entry per
// successful turn (the texts of a batch joined by "\n"); nil if none.
func (d *Daemon) Conversation(id string) []string {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.StubDir, filepath.Base(id)+".json"))
	if err != nil {
		return nil
	}
	var h []string
	if err := json.Unmarshal(b, &h); err != nil {
		d.t.Fatalf("stub conversation %s: %v", id, err)
	}
	return h
}

// ChildPids are the pids of the grandchildren the stub spawned with
// STUB_SPAWN_CHILD=1.
func (d *Daemon) ChildPids() []int {
	var out []int
	for _, l := range lines(readFile(filepath.Join(d.StubDir, "children.pids"))) {
		if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// --- processes ---

// Proc is a live process.
type Proc struct {
	Pid     int
	PPid    int
	State   string // from /proc/PID/stat: R, S, Z, ...
	Cmdline string
}

func (p Proc) String() string {
	return fmt.Sprintf("pid %d (ppid %d, %s): %s", p.Pid, p.PPid, p.State, p.Cmdline)
}

// Procs lists the live (non-zombie) processes whose environment holds this
// state dir's agent marker: the agents the daemon started and everything
// they started.
func (d *Daemon) Procs() []Proc {
	mark := d.Marker()
	if mark == "" {
		return nil
	}
	return ProcsWithEnv(supervisor.MarkerVar + "=" + mark)
}

// Marker is the state dir's agent marker value ("" before the first start).
func (d *Daemon) Marker() string {
	return strings.TrimSpace(readFile(filepath.Join(d.StateDir, daemon.MarkerFile)))
}

// WaitNoProcs waits up to timeout for Procs to be empty and returns what
// is left.
func (d *Daemon) WaitNoProcs(timeout time.Duration) []Proc {
	deadline := time.Now().Add(timeout)
	for {
		left := d.Procs()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcsWithEnv lists live (non-zombie) processes whose environment has the
// exact entry kv ("NAME=value").
func ProcsWithEnv(kv string) []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), kv) {
			continue
		}
		p, ok := ReadProc(pid)
		if !ok || p.State == "Z" || p.State == "X" {
			continue
		}
		out = append(out, p)
	}
	return out
}

// ReadProc reads a process's state from /proc; ok is false if it is gone.
func ReadProc(pid int) (Proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	p := Proc{Pid: pid}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 {
			p.State = f[0]
			p.PPid, _ = strconv.Atoi(f[1])
		}
	}
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	return p, true
}

// Alive reports whether pid is a live process (not gone, not a zombie).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	p, ok := ReadProc(pid)
	return ok && p.State != "Z" && p.State != "X"
}

// WriteScript writes an executable file (atomically, so a running copy is
// never modified) and returns its path.
func WriteScript(t testing.TB, path, content string) string {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}
