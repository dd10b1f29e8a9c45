package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/lifecycle"
)

// TestMain fails the run if any goroutine (such as timberjack's mill) is
// still running after the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testCfg = config.Log{Level: "info", MaxSizeMB: 1, MaxFiles: 2}

func openTest(t *testing.T, cfg config.Log, maxOpen int) (*Logs, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := open(dir, cfg, nil, maxOpen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, dir
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestPaths(t *testing.T) {
	for got, want := range map[string]string{
		ManagerPath("/s"):                          "/s/logs/manager.log",
		LifecyclePath("/s"):                        "/s/logs/session_lifecycle.log",
		SessionPath("/s", "alice"):                 "/s/logs/sessions/alice.log",
		filepath.Dir(SessionPath("/s", "../../x")): "/s/logs/sessions",
	} {
		if got != filepath.FromSlash(want) {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"": slog.LevelInfo, "debug": slog.LevelDebug, "info": slog.LevelInfo,
		"WARN": slog.LevelWarn, " error ": slog.LevelError,
	} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
	if _, err := Open(t.TempDir(), config.Log{Level: "loud"}, nil); err == nil {
		t.Error("Open with a bad level succeeded")
	}
}

func TestOpenCreatesFiles(t *testing.T) {
	var stderr bytes.Buffer
	dir := t.TempDir()
	l, err := Open(dir, testCfg, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, p := range []string{ManagerPath(dir), LifecyclePath(dir), filepath.Join(dir, "logs", "sessions")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	l.Manager().Info("daemon started", "pid", 42)
	l.Manager().Debug("hidden at info")
	lines := readLines(t, ManagerPath(dir))
	if len(lines) != 1 {
		t.Fatalf("manager.log = %q", lines)
	}
	for _, want := range []string{"time=", "level=INFO", `msg="daemon started"`, "pid=42"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("manager line %q lacks %s", lines[0], want)
		}
	}
	if strings.TrimSuffix(stderr.String(), "\n") != lines[0] {
		t.Errorf("stderr = %q, want %q", stderr.String(), lines[0])
	}
}

func TestOpenFailsOnUnwritableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(file, testCfg, nil); err == nil {
		l.Close()
		t.Fatal("Open under a regular file succeeded")
	}
}

func TestLifecycle(t *testing.T) {
	// At level error the manager drops the INFO event; the lifecycle file
	// keeps every event.
	l, dir := openTest(t, config.Log{Level: "error", MaxSizeMB: 1, MaxFiles: 1}, 4)
	l.Event(lifecycle.Event{Kind: lifecycle.Start, Chat: "alice", Detail: "new message"}, slog.Int("pid", 7))
	l.Event(lifecycle.Event{Kind: lifecycle.Failure, Cause: lifecycle.Dead, Chat: "bob", Detail: "exit status 1\nsecond line"})
	l.Event(lifecycle.Event{Kind: lifecycle.DeadLetter, Cause: lifecycle.Attempts, Chat: "carol", Detail: "too many attempts"})

	lines := readLines(t, LifecyclePath(dir))
	if len(lines) != 3 {
		t.Fatalf("lifecycle log = %q", lines)
	}
	for i, want := range [][]string{
		{"level=INFO", "event=start", "chat=alice", `reason="new message"`, "pid=7"},
		{"level=WARN", "event=failure", "chat=bob", `reason="exit status 1\nsecond line"`},
		{"level=WARN", "event=dead_letter", "chat=carol", `reason="too many attempts"`},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %q lacks %s", lines[i], w)
			}
		}
	}
	if got := readLines(t, ManagerPath(dir)); len(got) != 1 || got[0] != "" {
		t.Errorf("manager.log at level error = %q, want nothing", got)
	}

	l2, dir2 := openTest(t, testCfg, 4)
	l2.Event(lifecycle.Event{Kind: lifecycle.Reap, Cause: lifecycle.Idle, Chat: "dave", Detail: "idle for 2h"})
	if m, lc := readLines(t, ManagerPath(dir2)), readLines(t, LifecyclePath(dir2)); len(m) != 1 || m[0] != lc[0] {
		t.Errorf("manager %q and lifecycle %q differ", m, lc)
	}
}

func TestSession(t *testing.T) {
	l, dir := openTest(t, testCfg, 4)
	for _, chat := range []string{"alice", "../../etc/passwd", "a/b", ".."} {
		l.Session(chat).Info("turn done", "turns", 1)
		lines := readLines(t, SessionPath(dir, chat))
		if len(lines) != 1 || !strings.Contains(lines[0], "chat="+quote(chat)) ||
			!strings.Contains(lines[0], `msg="turn done"`) {
			t.Errorf("session %q log = %q", chat, lines)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 { // manager.log, session_lifecycle.log, sessions/
		t.Errorf("logs/ holds %d entries; a chat id escaped sessions/?", len(entries))
	}
}

// quote renders s as the text handler does for simple values.
func quote(s string) string {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func([]string, slog.Attr) slog.Attr { return slog.Attr{} },
	})).Info("", "v", s)
	return strings.TrimPrefix(strings.TrimSpace(b.String()), "v=")
}

func TestRotation(t *testing.T) {
	l, dir := openTest(t, testCfg, 4)
	line := strings.Repeat("x", 1000)
	for range 4 * 1024 { // ~4.5 MB, about four rotations of each log
		l.Manager().Info(line)
		l.Session("alice").Info(line)
	}
	if err := l.Close(); err != nil { // waits for timberjack to prune backups
		t.Fatal(err)
	}
	for _, p := range []string{ManagerPath(dir), SessionPath(dir, "alice")} {
		base := strings.TrimSuffix(filepath.Base(p), ".log")
		backups, _ := filepath.Glob(filepath.Join(filepath.Dir(p), base+"-*-size.log"))
		if len(backups) != testCfg.MaxFiles {
			t.Errorf("%s: %d backups %q, want %d", p, len(backups), backups, testCfg.MaxFiles)
		}
		for _, f := range append(backups, p) {
			if fi, err := os.Stat(f); err != nil || fi.Size() > 1<<20 {
				t.Errorf("%s: %v, size over 1 MB", f, err)
			}
		}
	}
}

func TestSessionLRU(t *testing.T) {
	l, dir := openTest(t, testCfg, 2)
	a, b, c := l.Session("a"), l.Session("b"), l.Session("c")
	a.Info("one")
	b.Info("one")
	c.Info("one") // evicts a
	if n := l.sessions.openCount(); n != 2 {
		t.Fatalf("%d session files open, want 2", n)
	}
	if _, ok := l.sessions.open["a"]; ok {
		t.Fatal("least recently used session a still open")
	}
	a.Info("two") // reopens a, evicts b
	if _, ok := l.sessions.open["b"]; ok {
		t.Fatal("session b still open")
	}
	if lines := readLines(t, SessionPath(dir, "a")); len(lines) != 2 ||
		!strings.Contains(lines[0], "msg=one") || !strings.Contains(lines[1], "msg=two") {
		t.Errorf("session a log = %q", lines)
	}
}

// TestSessionFDBound writes to many more chats than the cache holds and
// checks the process does not keep a descriptor per chat.
func TestSessionFDBound(t *testing.T) {
	before, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	l, dir := openTest(t, testCfg, 16)
	for i := range 400 {
		l.Session(fmt.Sprintf("chat-%d", i)).Info("hello")
	}
	after, _ := os.ReadDir("/proc/self/fd")
	if grown := len(after) - len(before); grown > 16+2+8 {
		t.Errorf("%d more descriptors open after writing to 400 chats", grown)
	}
	if lines := readLines(t, SessionPath(dir, "chat-0")); len(lines) != 1 {
		t.Errorf("chat-0 log = %q", lines)
	}
}

func TestConcurrentWriters(t *testing.T) {
	const goroutines, perG, chats = 16, 200, 40
	l, dir := openTest(t, testCfg, 8)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				chat := fmt.Sprintf("c%d", (g*7+i)%chats)
				l.Session(chat).Info("line", "g", g, "i", i)
				if i%50 == 0 {
					l.Manager().Info("progress", "g", g, "i", i)
					l.Lifecycle("restart", chat, "test")
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	total, events := 0, 0
	for c := range chats {
		chat := fmt.Sprintf("c%d", c)
		for _, line := range readLines(t, SessionPath(dir, chat)) {
			if strings.Contains(line, " msg=lifecycle chat="+chat+" event=restart reason=test") {
				events++ // lifecycle events also go to the chat's own log
				continue
			}
			if !strings.HasPrefix(line, "time=") || !strings.HasSuffix(line, " chat="+chat+" g="+field(line, "g")+" i="+field(line, "i")) {
				t.Fatalf("%s: torn line %q", chat, line)
			}
			total++
		}
	}
	if total != goroutines*perG {
		t.Errorf("%d session lines, want %d", total, goroutines*perG)
	}
	if events != goroutines*perG/50 {
		t.Errorf("%d lifecycle lines in session logs, want %d", events, goroutines*perG/50)
	}
	if n := len(readLines(t, LifecyclePath(dir))); n != goroutines*perG/50 {
		t.Errorf("%d lifecycle lines, want %d", n, goroutines*perG/50)
	}
}

// field returns the value of key=value in a text log line.
func field(line, key string) string {
	_, v, _ := strings.Cut(line, " "+key+"=")
	v, _, _ = strings.Cut(v, " ")
	return v
}

func TestClose(t *testing.T) {
	l, dir := openTest(t, testCfg, 4)
	s := l.Session("alice")
	s.Info("before")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s.Info("after")           // dropped
	l.Manager().Info("after") // appended without rotation
	if lines := readLines(t, SessionPath(dir, "alice")); len(lines) != 1 {
		t.Errorf("session log after Close = %q", lines)
	}
	if lines := readLines(t, ManagerPath(dir)); len(lines) != 1 || !strings.Contains(lines[0], "msg=after") {
		t.Errorf("manager log after Close = %q", lines)
	}
}
