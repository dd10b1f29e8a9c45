package security

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

var stubQuiet = map[string]any{
	"health.first_check_delay": "1h",
	"health.check_interval":    "1h",
	"health.idle_timeout":      "1h",
}

// An agent gets the allow-listed variables, the passthrough ones and
// agent.env — never the rest of the daemon's environment (cloud keys, the
// SSH agent socket).
func TestAgentSeesOnlyAllowedVariables(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "leaked-cloud-key")
	t.Setenv("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock")
	t.Setenv("DISPATCH_TEST_PASS", "passed-through")
	t.Setenv("LC_TIME", "C")
	d := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{
		"agent.env.STUB_LOG_ENV": "AWS_SECRET_ACCESS_KEY,SSH_AUTH_SOCK,DISPATCH_TEST_PASS,PATH,LC_TIME,STUB_STATE_DIR",
		"agent.env_passthrough":  []string{"DISPATCH_TEST_PASS"},
	})))
	id := d.Send("alice", "hi")
	d.WaitMessage(id, "done", 10*time.Second)
	inv := d.Invocations()
	if len(inv) == 0 {
		t.Fatal("no agent started")
	}
	env := inv[0].Env
	for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "SSH_AUTH_SOCK"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s=%q reached the agent", k, v)
		}
	}
	for k, want := range map[string]string{"DISPATCH_TEST_PASS": "passed-through", "PATH": os.Getenv("PATH"), "LC_TIME": "C", "STUB_STATE_DIR": d.StubDir} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

// Each chat's agent works in a folder of its own; a conversation that an
// earlier version kept under the shared working directory is moved along,
// so that --resume still finds it (the stub keeps conversations the way
// the CLI does: per working directory).
func TestPerChatWorkingDirsKeepResume(t *testing.T) {
	home := t.TempDir()
	d := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{
		"agent.env.STUB_PROJECTS": "1",
		"agent.env.HOME":          home,
	})))
	work := filepath.Join(d.StateDir, "work")
	d.WaitMessage(d.Send("alice", "one"), "done", 10*time.Second)
	d.WaitMessage(d.Send("bob", "hello"), "done", 10*time.Second)
	sid := d.MustSession("alice").SessionID
	dirs := map[string]string{}
	for _, iv := range d.Invocations() {
		dirs[iv.Flag("--session-id")] = iv.Cwd
	}
	aliceDir, bobDir := dirs[sid], dirs[d.MustSession("bob").SessionID]
	if aliceDir != claude.ChatDir(work, "alice") || bobDir != claude.ChatDir(work, "bob") || aliceDir == bobDir {
		t.Fatalf("working directories alice %q, bob %q; want one per chat under %s", aliceDir, bobDir, work)
	}
	if fi, err := os.Stat(aliceDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("alice's folder: %v", err)
	}

	// Put alice's conversation where an earlier version (one shared
	// working directory) kept it, then resume.
	d.Term()
	newSlug, _ := claude.ProjectSlug(aliceDir)
	oldSlug, _ := claude.ProjectSlug(work)
	projects := filepath.Join(home, ".claude", "projects")
	if err := os.MkdirAll(filepath.Join(projects, oldSlug), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(projects, newSlug, sid+".jsonl"), filepath.Join(projects, oldSlug, sid+".jsonl")); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	m := d.WaitMessage(d.Send("alice", "two"), "done", 15*time.Second)
	if !strings.Contains(m.Reply, "(turn 2)") {
		t.Errorf("reply %q: the conversation did not resume (want turn 2)", m.Reply)
	}
	if ev := d.Events("alice", "resume_failed", ""); len(ev) != 0 {
		t.Errorf("resume failed: %v", ev)
	}
	if _, err := os.Stat(filepath.Join(projects, newSlug, sid+".jsonl")); err != nil {
		t.Errorf("conversation not moved under the chat's folder: %v", err)
	}
}
