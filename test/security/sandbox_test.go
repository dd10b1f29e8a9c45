package security

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// requireBwrap skips when bubblewrap is missing, or fails under CI
// (CI=true or DISPATCH_REQUIRE_BWRAP=1).
func requireBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		msg := "bubblewrap (bwrap) is not installed: run scripts/install-tools.sh as root"
		if os.Getenv("CI") == "true" || os.Getenv("DISPATCH_REQUIRE_BWRAP") == "1" {
			t.Fatal(msg + " (required under CI)")
		}
		t.Skip(msg)
	}
}

// sandboxed starts a daemon whose agents run sandboxed (mode on), keeping
// their conversations where the CLI does, under home.
func sandboxed(t *testing.T, home string, extra map[string]any) *daemontest.Daemon {
	t.Helper()
	requireBwrap(t)
	set := daemontest.With(stubQuiet, map[string]any{
		"agent.sandbox.mode":      "on",
		"agent.env.STUB_PROJECTS": "1",
		"agent.env.HOME":          home,
	})
	for k, v := range extra {
		set[k] = v
	}
	return daemontest.Start(t, daemontest.Set(set))
}

// reply sends text to chat and returns the reply's part after marker.
func reply(t *testing.T, d *daemontest.Daemon, chat, text, marker string) string {
	t.Helper()
	m := d.WaitMessage(d.Send(chat, text), "done", 20*time.Second)
	_, after, ok := strings.Cut(m.Reply, marker)
	if !ok {
		t.Fatalf("reply %q lacks %q", m.Reply, marker)
	}
	return after
}

// A prompt-injected agent in the sandbox can read neither another chat's
// folder nor its conversations, cannot see or signal another agent, and
// cannot reach the state directory, its database or the control socket.
func TestSandboxIsolatesAgents(t *testing.T) {
	home := t.TempDir()
	d := sandboxed(t, home, nil)
	work := filepath.Join(d.StateDir, "work")
	bobDir := claude.ChatDir(work, "bob")

	// bob's agent writes a note in its folder and keeps a conversation.
	got := reply(t, d, "bob", sh("echo bob-private-note > note.txt && pwd"), " sh: ")
	if got != "0 "+bobDir {
		t.Fatalf("bob's agent: %q; want it working in %s", got, bobDir)
	}
	bob := d.MustSession("bob")
	bobSlug, _ := claude.ProjectSlug(bobDir)
	bobConv := filepath.Join(home, ".claude", "projects", bobSlug, bob.SessionID+".jsonl")
	if b, err := os.ReadFile(bobConv); err != nil || !strings.Contains(string(b), "SH=") {
		t.Fatalf("bob's conversation is not where the CLI keeps it (%s): %v", bobConv, err)
	}

	sock := d.StateDir + "/dispatch.sock"
	script := fmt.Sprintf(`
cat %[1]s/note.txt 2>&1; echo "note=$?"
cat %[2]s 2>&1; echo "conv=$?"
echo "bobprojects=$(ls %[3]s/.claude/projects 2>&1 | grep -c -- '-bob$')"
head -c 16 %[4]s/dispatch.db 2>&1; echo "db=$?"
ls -A %[4]s 2>&1 | tr '\n' ' '; echo "state=$?"
kill -STOP %[5]d 2>&1; echo "stop=$?"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
`, bobDir, bobConv, home, d.StateDir, bob.Pid)
	out := reply(t, d, "alice", sh(script)+" FETCH="+sock+",/v1/status", " fetched: ")
	t.Logf("alice's attempts:\n%s", out)
	if !strings.Contains(out, "bobprojects=0") {
		t.Errorf("alice's agent sees bob's conversations:\n%s", out)
	}
	for _, bad := range []string{"bob-private-note", "SQLite format", "dispatch.db ", "note=0", "conv=0", "db=0", "stop=0", "200 {", "403 {"} {
		if strings.Contains(out, bad) {
			t.Errorf("alice's agent got through (%q):\n%s", bad, out)
		}
	}
	if !strings.HasPrefix(out, "error") {
		t.Errorf("alice's agent reached the control socket:\n%s", out)
	}
	// bob's agent was neither stopped nor killed: it answers at once.
	if got := reply(t, d, "bob", "still there?", "echo: "); !strings.Contains(got, "still there?") {
		t.Errorf("bob: %q", got)
	}
	if d.MustSession("bob").Pid != bob.Pid {
		t.Errorf("bob's agent was restarted")
	}
}

// A trusted chat's sandboxed agent still reaches the control socket (and
// is trusted there); an untrusted one cannot even see it.
func TestSandboxTrustedChatGetsTheSocket(t *testing.T) {
	d := sandboxed(t, t.TempDir(), nil)
	sock := d.StateDir + "/dispatch.sock"
	if got := reply(t, d, "master", "FETCH="+sock+",/v1/status", " fetched: "); !strings.HasPrefix(got, "200 ") {
		t.Errorf("master's agent: %q; want 200", truncate(got))
	}
	if got := reply(t, d, "alice", "FETCH="+sock+",/v1/status", " fetched: "); !strings.HasPrefix(got, "error") {
		t.Errorf("alice's agent: %q; want no socket at all", truncate(got))
	}
}

// The conversation survives the agent being stopped and resumed inside
// the sandbox, and one kept under the shared working directory of earlier
// versions is moved into the chat's folder and resumed.
func TestSandboxKeepsResumeAndMigration(t *testing.T) {
	home := t.TempDir()
	d := sandboxed(t, home, nil)
	reply(t, d, "alice", "one", "echo: ")
	sid := d.MustSession("alice").SessionID
	work := filepath.Join(d.StateDir, "work")
	d.Term()
	newSlug, _ := claude.ProjectSlug(claude.ChatDir(work, "alice"))
	oldSlug, _ := claude.ProjectSlug(work)
	projects := filepath.Join(home, ".claude", "projects")
	if err := os.MkdirAll(filepath.Join(projects, oldSlug), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(projects, newSlug, sid+".jsonl"), filepath.Join(projects, oldSlug, sid+".jsonl")); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	if got := reply(t, d, "alice", "two", "echo: "); !strings.Contains(got, "(turn 2)") {
		t.Errorf("reply %q: the conversation did not resume (want turn 2)", got)
	}
}

// With mode on and no way to sandbox (bwrap not found in $PATH), the
// daemon refuses to start and says why.
func TestSandboxOnRefusesWithoutBwrap(t *testing.T) {
	empty := t.TempDir()
	d := daemontest.New(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{"agent.sandbox.mode": "on"})))
	t.Setenv("PATH", empty)
	out := refusedStart(t, d)
	if !strings.Contains(out, "agent.sandbox.mode is on") || !strings.Contains(out, "bubblewrap") {
		t.Errorf("refusal does not say why:\n%s", out)
	}
}

// With mode auto and no way to sandbox, the daemon warns once, on standard
// error too, and runs its agents unsandboxed.
func TestSandboxAutoWarnsWithoutBwrap(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	d := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{"agent.sandbox.mode": "auto"})))
	d.WaitMessage(d.Send("alice", "hi"), "done", 10*time.Second)
	d.WaitMessage(d.Send("bob", "hi"), "done", 10*time.Second)
	if n := strings.Count(d.Output(), "agents run unsandboxed"); n == 0 {
		t.Errorf("no warning that agents run unsandboxed:\n%s", d.Output())
	}
	if n := strings.Count(d.ManagerLog(), "agents run unsandboxed"); n != 1 {
		t.Errorf("the manager log warns %d times, want once", n)
	}
}
