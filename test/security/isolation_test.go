package security

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// sh is the stub's directive that runs script as a tool call would.
func sh(script string) string {
	return "SH=" + base64.StdEncoding.EncodeToString([]byte(script))
}

// A child of an untrusted agent that moves into the trusted master
// agent's process group is still the untrusted agent's: trust follows
// ancestry from the process dispatch started, never a group id. (Each
// agent runs in a session of its own, so the move itself fails too.)
func TestAgentCannotBorrowTrustedGroup(t *testing.T) {
	d := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{
		"agent.sandbox.mode": "off", // the trust rule itself, without the sandbox's help
	})))
	d.WaitMessage(d.Send("master", "hello"), "done", 10*time.Second)
	pg := d.MustSession("master").Pid
	if pg <= 0 {
		t.Fatal("master has no live agent")
	}
	sock := d.StateDir + "/dispatch.sock"
	m := d.WaitMessage(d.Send("alice", fmt.Sprintf("FETCHPG=%d,%s,/v1/status", pg, sock)), "done", 15*time.Second)
	_, got, _ := strings.Cut(m.Reply, " fetched: ")
	if !strings.Contains(got, "403") || strings.Contains(got, " 200 ") {
		t.Fatalf("a child of alice's agent in master's group got %q; want 403", got)
	}
	// The master's own children are still trusted.
	m = d.WaitMessage(d.Send("master", "FETCHCHILD="+sock+",/v1/status"), "done", 15*time.Second)
	if _, got, _ := strings.Cut(m.Reply, " fetched: "); !strings.HasPrefix(got, "200 ") {
		t.Errorf("master's own child got %q; want 200", truncate(got))
	}
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
