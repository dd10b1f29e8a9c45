package campaign

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Campaign 7: a prompt-injected agent (chat alice) with the sandbox on
// runs shell commands as tools would: it joins the trusted master agent's
// process group and calls the control socket, reads the daemon's
// environment, reads bob's folder and conversations, stops bob's agent and
// reads the state directory. Every attempt must fail, bob must still be
// answered by the same agent, and the master's own children must still be
// trusted.
func TestCampaignSandboxedAttacker(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bubblewrap is not installed")
	}
	home := t.TempDir()
	d := daemontest.Start(t, daemontest.Set(map[string]any{
		"health.first_check_delay": "1h",
		"health.check_interval":    "1h",
		"health.idle_timeout":      "1h",
		"agent.sandbox.mode":       "on",
		"agent.env.STUB_PROJECTS":  "1",
		"agent.env.HOME":           home,
	}))
	reply := func(chat, text, marker string) string {
		m := d.WaitMessage(d.Send(chat, text), "done", 30*time.Second)
		_, after, ok := strings.Cut(m.Reply, marker)
		if !ok {
			t.Fatalf("%s: reply %q lacks %q", chat, m.Reply, marker)
		}
		return after
	}
	bobDir := claude.ChatDir(filepath.Join(d.StateDir, "work"), "bob")
	reply("bob", sh("echo bob-private-note > note.txt"), " sh: ")
	reply("master", "hello", "echo: ")
	bob, master := d.MustSession("bob"), d.MustSession("master")
	sock := filepath.Join(d.StateDir, "dispatch.sock")

	attacks := []struct {
		name, script string
		held         func(out string) bool
	}{
		{"setpgid into the master's group + control socket", fmt.Sprintf(
			`perl -e 'setpgrp(0,$ARGV[0]) or print "setpgid:$! "; exec "curl","-s","-o","/dev/null","-w","http=%%{http_code}","--unix-socket",$ARGV[1],"http://x/v1/status"' %d %s; echo " curl=$?"`, master.Pid, sock),
			func(out string) bool { return !strings.Contains(out, "http=200") }},
		{"discover the master through /proc/*/cwd", `for p in /proc/[0-9]*; do readlink $p/cwd; done 2>/dev/null | grep -c master`,
			func(out string) bool { return strings.TrimSpace(out) == "0" }},
		{"read /proc/<daemon>/environ", fmt.Sprintf(`tr '\0' '\n' < /proc/%d/environ 2>&1 | head -c 300; echo " rc=$?"; cat /proc/%d/cmdline 2>&1 | head -c 100`, d.Pid(), d.Pid()),
			func(out string) bool { return !strings.Contains(out, "PATH=") && !strings.Contains(out, "config") }},
		{"read bob's folder", fmt.Sprintf(`cat %s/note.txt 2>&1`, bobDir),
			func(out string) bool { return !strings.Contains(out, "bob-private-note") }},
		{"read bob's transcripts", fmt.Sprintf(`ls -R %s/.claude/projects 2>&1 | grep -c bob`, home),
			func(out string) bool { return strings.TrimSpace(out) == "0" }},
		{"kill -STOP bob's agent", fmt.Sprintf(`kill -STOP %d 2>&1; echo "rc=$?"`, bob.Pid),
			func(out string) bool { return !strings.Contains(out, "rc=0") }},
		{"read the state directory", fmt.Sprintf(`ls -A %s 2>&1; head -c 16 %s/dispatch.db 2>&1; echo " rc=$?"`, d.StateDir, d.StateDir),
			func(out string) bool {
				return !strings.Contains(out, "SQLite") && !strings.Contains(out, "dispatch.db\n")
			}},
	}
	held := 0
	for _, a := range attacks {
		out := reply("alice", sh(a.script), " sh: ")
		_, text, _ := strings.Cut(out, " ") // "<exit status> <output>"
		ok := a.held(text)
		if ok {
			held++
		} else {
			t.Errorf("attack %q got through: %s", a.name, out)
		}
		t.Logf("attack %q held=%t: %.300q", a.name, ok, out)
	}
	bobOK := strings.Contains(reply("bob", "still there?", "echo: "), "still there?") && d.MustSession("bob").Pid == bob.Pid
	masterOK := strings.HasPrefix(reply("master", "FETCHCHILD="+sock+",/v1/status", " fetched: "), "200 ")
	t.Logf("RESULT sandboxed attacker: %d of %d attacks held; bob answered by the same agent %t; master's own child trusted %t",
		held, len(attacks), bobOK, masterOK)
	if !bobOK || !masterOK {
		t.Errorf("bob ok %t, master ok %t", bobOK, masterOK)
	}
}
