package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// With no agent command installed, the daemon still starts but says so at
// once, on stderr and in its log, pointing to dispatch doctor; and without
// --log-stderr its log lines stay in its files.
func TestDaemonWarnsWhenTheAgentIsMissing(t *testing.T) {
	d := daemontest.New(t, opts(map[string]any{"agent.command": "no-such-claude-here"}))
	cmd := d.Cmd("daemon")
	var stderr syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("daemon did not stop")
		}
	}()
	if !daemontest.Poll(func() bool { return strings.Contains(stderr.String(), "dispatch doctor") }, 10*time.Second) {
		t.Fatalf("no warning about the missing agent on stderr: %q", stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, `"no-such-claude-here" not found`) {
		t.Errorf("the warning does not name the command: %q", out)
	}
	if strings.Contains(out, "level=") {
		t.Errorf("log lines on stderr without --log-stderr: %q", out)
	}
	if !daemontest.Poll(func() bool { _, _, code := d.Run("status"); return code == 0 }, 10*time.Second) {
		t.Fatal("the daemon does not serve")
	}
	b, _ := os.ReadFile(filepath.Join(d.StateDir, "logs", "manager.log"))
	if !strings.Contains(string(b), "level=WARN") || !strings.Contains(string(b), "no-such-claude-here") {
		t.Errorf("manager.log has no warning about the missing agent:\n%s", b)
	}
}

// queue list shows replies and ages, says when it is empty; queue show has
// every field; logs CHAT shows the chat's texts, the last -n lines, and an
// unknown chat is an error; completion offers chats, messages and states.
func TestCLIShowsRepliesAndLogs(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))

	out, errOut, code := d.Run("queue", "list")
	if code != 0 || !strings.HasPrefix(out, "no pending, in-flight or dead messages\n") || !strings.Contains(out, "--state done") {
		t.Errorf("queue list of an empty queue: exit %d, %q %q", code, out, errOut)
	}
	if out, _, _ := d.Run("queue", "list", "--state", "dead", "--chat", "zoe"); strings.TrimSpace(out) != "no messages in state dead of chat zoe" {
		t.Errorf("queue list with filters, empty: %q", out)
	}

	out, errOut, code = d.Run("send", "alice", "what a day", "--client-id", "k-1")
	if code != 0 {
		t.Fatalf("send: exit %d, %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	m := d.WaitMessage(id, "done", 15*time.Second)

	out, _, _ = d.Run("queue", "list", "--state", "done")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "REPLY") || !strings.Contains(lines[0], "CREATED") {
		t.Fatalf("queue list --state done:\n%s", out)
	}
	if !strings.Contains(lines[1], "s ago") || !strings.Contains(lines[1], "what a day") ||
		!strings.Contains(lines[1], m.Reply[:min(10, len(m.Reply))]) {
		t.Errorf("queue list row lacks the age, text or reply (%q):\n%s", m.Reply, out)
	}

	out, _, code = d.Run("queue", "show", id)
	for _, want := range []string{"client_id: k-1", "turn_id:   " + m.TurnID, "text:\n  what a day", "reply:\n  " + m.Reply, "ago)"} {
		if code != 0 || m.TurnID == "" || !strings.Contains(out, want) {
			t.Errorf("queue show lacks %q (exit %d):\n%s", want, code, out)
		}
	}

	// The chat's log has the texts of its message and reply, escaped.
	out, _, code = d.Run("logs", "alice", "-n", "0")
	if code != 0 || !strings.Contains(out, `text="what a day"`) || !strings.Contains(out, "msg=reply") {
		t.Errorf("logs alice lacks the message and reply texts:\n%s", out)
	}
	all := strings.Count(out, "\n")
	out, _, _ = d.Run("logs", "alice", "-n", "2")
	if n := strings.Count(out, "\n"); all > 2 && n != 2 {
		t.Errorf("logs -n 2 printed %d lines:\n%s", n, out)
	}
	if out, _, _ := d.Run("logs", "alice"); strings.Count(out, "\n") != min(all, 10) {
		t.Errorf("logs printed %d lines, want the last %d:\n%s", strings.Count(out, "\n"), min(all, 10), out)
	}
	_, errOut, code = d.Run("logs", "nosuch")
	if code != 1 || !strings.Contains(errOut, "unknown chat") {
		t.Errorf("logs nosuch: exit %d, %q", code, errOut)
	}

	// logs -f starts from the last lines, then follows.
	f := d.Cmd("logs", "alice", "-f", "-n", "1")
	pr, pw := io.Pipe()
	f.Stdout = pw
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Process.Kill(); _ = f.Wait(); pw.Close() }()
	got := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	next := func() string {
		select {
		case l := <-got:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("logs -f printed nothing for 10s")
			return ""
		}
	}
	if first := next(); !strings.Contains(first, "reply") {
		t.Errorf("logs -f -n 1 started with %q, want the last line (the reply)", first)
	}
	d.WaitMessage(d.Send("alice", "and another one"), "done", 15*time.Second)
	for {
		if l := next(); strings.Contains(l, `text="and another one"`) {
			break
		}
	}

	// Completion from the running daemon.
	crash := d.Send("gina", "CRASH now")
	d.WaitMessage(crash, "dead", 20*time.Second)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "sessions", "kill", ""}, "alice"},
		{[]string{"__complete", "logs", ""}, "gina"},
		{[]string{"__complete", "queue", "retry", ""}, crash},
		{[]string{"__complete", "queue", "list", "--state", ""}, "inflight"},
	} {
		out, err := complete(d, tt.args...)
		if err != nil || !strings.Contains(out, tt.want) {
			t.Errorf("%v: %v, %q; want %q offered", tt.args, err, out, tt.want)
		}
	}
	if out, _ := complete(d, "__complete", "queue", "retry", ""); strings.Contains(out, id) {
		t.Errorf("queue retry completes a message that is not dead: %q", out)
	}
}

// send CHAT - reads standard input: 200 KB arrive whole; over 1 MiB is
// refused.
func TestSendReadsStandardInput(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	big := strings.Repeat("0123456789abcdef\n", 200<<10/17)
	cmd := d.Cmd("send", "alice", "-")
	cmd.Stdin = strings.NewReader(big)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("send - of %d bytes: %v", len(big), err)
	}
	st, data := d.Get("/v1/queue/" + strings.TrimSpace(string(out)))
	var m api.MessageOut
	if err := json.Unmarshal(data, &m); err != nil || st != 200 {
		t.Fatalf("GET /v1/queue/ID: %d %s", st, data)
	}
	if m.Text != big {
		t.Errorf("stored text of %d bytes, sent %d", len(m.Text), len(big))
	}
	cmd = d.Cmd("send", "alice", "-")
	cmd.Stdin = strings.NewReader(strings.Repeat("x", 1<<20+1))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "limit") {
		t.Errorf("send - of more than 1 MiB: %v, %q", err, stderr.String())
	}
}

// complete runs cobra's completion command with --config first: the word
// being completed is the last argument.
func complete(d *daemontest.Daemon, args ...string) (string, error) {
	cmd := d.Cmd()
	cmd.Args = append([]string{d.Bin, args[0], "--config", d.ConfigPath}, args[1:]...)
	out, err := cmd.Output()
	return string(out), err
}
