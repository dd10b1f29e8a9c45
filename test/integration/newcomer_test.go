package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// What a newcomer tripped on at the command line, each with the command
// they typed: queue list hid the answered messages its help promised; a
// send to a paused chat never said so; exempt --off said the same as on;
// events --chat with a typo printed nothing and succeeded.
func TestCLISaysWhatIsGoingOn(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	id := d.Send("alice", "hello")
	d.WaitMessage(id, "done", 15*time.Second)

	t.Run("queue list shows the recently answered", func(t *testing.T) {
		out, errOut, code := d.Run("queue", "list")
		if code != 0 || !strings.Contains(out, "no pending, in-flight or dead messages") ||
			!strings.Contains(out, "recently answered") || !strings.Contains(out, id) || !strings.Contains(out, "echo: hello") ||
			!strings.Contains(out, "dispatch queue list --state done") {
			t.Errorf("queue list with one answered message: exit %d\n%s%s", code, out, errOut)
		}
		if out, _, _ := d.Run("queue", "list", "--state", "done"); !strings.Contains(out, id) || strings.Contains(out, "recently answered") {
			t.Errorf("queue list --state done:\n%s", out)
		}
		help, _, _ := d.Run("queue", "list", "--help")
		if !strings.Contains(help, "--state done lists every answered message") {
			t.Errorf("queue list --help does not say where the answered messages are:\n%s", help)
		}
	})

	t.Run("send to a paused chat says so at once", func(t *testing.T) {
		if _, errOut, code := d.Run("sessions", "pause", "alice"); code != 0 {
			t.Fatalf("pause: %d %s", code, errOut)
		}
		want := "chat alice is paused"
		out, errOut, code := d.Run("send", "alice", "are you there?")
		if code != 0 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "dispatch sessions resume alice") || strings.Contains(out, "paused") {
			t.Errorf("send to a paused chat: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		_, errOut, code = d.Run("send", "alice", "still there?", "--wait", "--timeout", "1s")
		if code != 3 || strings.Count(errOut, want) != 1 {
			t.Errorf("send --wait to a paused chat: exit %d, stderr %q; want 3 and the pause said once", code, errOut)
		}
		out, _, _ = d.Run("status")
		if !strings.Contains(out, "alice: paused (2 waiting; `dispatch sessions resume alice` lets them go)") {
			t.Errorf("status of a paused chat with waiting messages:\n%s", out)
		}
		if _, errOut, code := d.Run("sessions", "resume", "alice"); code != 0 {
			t.Fatalf("resume: %d %s", code, errOut)
		}
	})

	t.Run("exempt --off says off", func(t *testing.T) {
		on, _, _ := d.Run("sessions", "exempt", "alice")
		off, _, _ := d.Run("sessions", "exempt", "alice", "--off")
		if on == off || !strings.Contains(off, "cleared") || !strings.Contains(on, "exempt") {
			t.Errorf("exempt said %q, exempt --off said %q", on, off)
		}
	})

	t.Run("events of an unknown chat", func(t *testing.T) {
		out, errOut, code := d.Run("events", "--chat", "alicee")
		if code != 1 || out != "" || !strings.Contains(errOut, `unknown chat "alicee"`) || !strings.Contains(errOut, "did you mean alice?") {
			t.Errorf("events --chat alicee: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if out, errOut, code := d.Run("events", "--chat", "alice"); code != 0 || !strings.Contains(out, "echo: hello") {
			t.Errorf("events --chat alice: exit %d, %q %q", code, out, errOut)
		}
	})
}

// send with no daemon running says, after a second, what it is waiting
// for, before its error.
func TestSendSaysWhatItWaitsFor(t *testing.T) {
	d := daemontest.New(t, opts(noChecks)) // never started
	start := time.Now()
	_, errOut, code := d.Run("send", "alice", "hello", "--wait-ready", "2s")
	took := time.Since(start)
	if code != 1 || !strings.Contains(errOut, "no daemon at") || !strings.Contains(errOut, "waiting up to 2s") ||
		!strings.Contains(errOut, "daemon not reachable") {
		t.Errorf("send without a daemon: exit %d after %s, stderr %q", code, took, errOut)
	}
	if i, j := strings.Index(errOut, "waiting up to"), strings.Index(errOut, "not reachable"); i > j {
		t.Errorf("the waiting note comes after the error: %q", errOut)
	}
	// Without a wait there is nothing to say.
	if _, errOut, _ := d.Run("status"); strings.Contains(errOut, "waiting") {
		t.Errorf("status without a daemon: %q", errOut)
	}
}

// A config file that holds an API key and that others may read is warned
// about at start (token files in that state are refused), with the fix;
// at 0600 nothing is said.
func TestDaemonWarnsOfAReadableConfigWithSecrets(t *testing.T) {
	d := daemontest.New(t, opts(with(noChecks, map[string]any{"agent.env.ANTHROPIC_API_KEY": "sk-ant-not-a-real-key"})))
	if err := os.Chmod(d.ConfigPath, 0o644); err != nil {
		t.Fatal(err)
	}
	want := "holds secrets (agent.env.ANTHROPIC_API_KEY) and is readable by group or others (mode 0644): chmod 600 " + d.ConfigPath
	start := func() string {
		cmd := d.Cmd("daemon")
		var stderr syncbuf.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !daemontest.Poll(func() bool { _, _, code := d.Run("status"); return code == 0 }, 10*time.Second) {
			t.Fatal("the daemon does not serve")
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return stderr.String()
	}
	if out := start(); !strings.Contains(out, want) || strings.Contains(out, "sk-ant-not") {
		t.Errorf("daemon stderr with a 0644 config holding a key:\n%s\nwant %q", out, want)
	}
	if out, _, _ := d.Run("doctor"); !strings.Contains(out, want) {
		t.Errorf("doctor does not warn:\n%s", out)
	}
	if err := os.Chmod(d.ConfigPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := start(); strings.Contains(out, "holds secrets") {
		t.Errorf("warned at 0600: %s", out)
	}
}
