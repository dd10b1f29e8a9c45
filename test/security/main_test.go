// Package security runs the real dispatch binary against the attacks of
// the trust-boundaries review: another local user (acting as uid 65534
// through setpriv, so these tests need root and skip with a message
// without it), network clients without a token, agents that try the
// control socket, and clients that try to exhaust the daemon.
package security

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// echoAgent runs the built-in echo agent (no processes).
var echoAgent = map[string]any{"agent.kind": "echo"}

// refusedStart runs `dispatch daemon` on d's config and expects it to exit
// non-zero within a few seconds; it returns what the daemon printed. A
// daemon that starts anyway is killed and the test fails.
func refusedStart(t *testing.T, d *daemontest.Daemon) string {
	t.Helper()
	cmd := d.Cmd("daemon")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("daemon exited 0; want a refusal. Output:\n%s", out.String())
		}
		return out.String()
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		t.Fatalf("daemon started instead of refusing. Output:\n%s", out.String())
		return ""
	}
}
