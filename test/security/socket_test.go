package security

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// A prompt-injected agent tries the control socket to read another chat's
// message: refused, whether the agent asks itself or through a child that
// left its process group and cleared its environment. The master
// session's agent, trusted by default, may use it.
func TestAgentCannotUseControlSocket(t *testing.T) {
	d := daemontest.Start(t, daemontest.Set(stubQuiet))
	sock := filepath.Join(d.StateDir, "dispatch.sock")
	const secret = "alice's private words"
	secretID := d.Send("alice", secret)
	d.WaitMessage(secretID, "done", 10*time.Second)

	for _, directive := range []string{"FETCH", "FETCHCHILD"} {
		m := d.WaitMessage(d.Send("mallory", directive+"="+sock+",/v1/messages/"+secretID), "done", 15*time.Second)
		if strings.Contains(m.Reply, secret) || !strings.Contains(m.Reply, "fetched: 403") {
			t.Errorf("%s: an untrusted agent got through: %q", directive, m.Reply)
		}
		if !strings.Contains(m.Reply, `chat \"mallory\"`) && !strings.Contains(m.Reply, "agents may not use the control API") {
			t.Errorf("%s: the refusal does not say why: %q", directive, m.Reply)
		}
	}
	m := d.WaitMessage(d.Send("master", "FETCHCHILD="+sock+",/v1/messages/"+secretID), "done", 15*time.Second)
	if !strings.Contains(m.Reply, "fetched: 200") {
		t.Errorf("the trusted master agent was refused: %q", m.Reply)
	}
	// The operator's own commands still work.
	if _, errOut, code := d.Run("status"); code != 0 {
		t.Errorf("status: exit %d: %s", code, errOut)
	}
}

// sessions.trusted: [] trusts no agent, not even the master's.
func TestNoTrustedChats(t *testing.T) {
	d := daemontest.Start(t, daemontest.Set(daemontest.With(stubQuiet, map[string]any{"sessions.trusted": []string{}})))
	sock := filepath.Join(d.StateDir, "dispatch.sock")
	m := d.WaitMessage(d.Send("master", "FETCH="+sock+",/v1/status"), "done", 15*time.Second)
	if !strings.Contains(m.Reply, "fetched: 403") {
		t.Errorf("master's agent got through with no trusted chats: %q", m.Reply)
	}
}
