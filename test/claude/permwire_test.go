package claude

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/wire"
)

// These tests run the real daemon with the real CLI in ask mode: the
// CLI's requests become stored requests on the feed, people answer them
// with the dispatch CLI or the API, and the turn goes on with the answer.

// askRig starts a daemon whose agents ask (agent.permissions: ask); set
// adds config keys. It returns the rig and the agents' directory.
func askRig(t *testing.T, set map[string]any) (*rig, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"agent.permissions": "ask", "agent.dir": dir}
	for k, v := range set {
		cfg[k] = v
	}
	return start(t, fakeapi.ModeOK, cfg), dir
}

// openRequest waits for chat's one open permission request.
func (r *rig) openRequest(chat string) wire.PermissionOut {
	r.t.Helper()
	var got []wire.PermissionOut
	r.d.WaitFor(func() bool {
		_, data := r.d.Get("/v1/permissions?chat=" + url.QueryEscape(chat))
		var out wire.PermissionsOut
		_ = json.Unmarshal(data, &out)
		got = out.Requests
		return len(got) > 0
	}, turnTimeout, chat+"'s permission request")
	if len(got) != 1 {
		r.t.Fatalf("open requests of %s: %+v, want one", chat, got)
	}
	return got[0]
}

// feed returns chat's events of the given types.
func (r *rig) feed(chat string, types ...events.Type) []events.Event {
	r.t.Helper()
	var ts []string
	for _, ty := range types {
		ts = append(ts, string(ty))
	}
	_, data := r.d.Get("/v1/events?chat=" + url.QueryEscape(chat) + "&types=" + strings.Join(ts, ","))
	var out wire.EventsOut
	if err := json.Unmarshal(data, &out); err != nil {
		r.t.Fatalf("events: %s: %v", data, err)
	}
	return out.Events
}

func fileIn(dir, chat, name string) bool {
	_, err := os.Stat(filepath.Join(claude.ChatDir(dir, chat), name))
	return err == nil
}

// TestPermissionAllowDenyAlways: allow (dispatch permissions allow) runs
// the tool and the reply says so; a second answer exits 1; deny (the API)
// refuses it and a second answer is a 409; allow --always lets the next
// call of the tool run without a request.
func TestPermissionAllowDenyAlways(t *testing.T) {
	t.Parallel()
	r, dir := askRig(t, nil)

	// allow, from the CLI
	id := r.send("allow", touchPrompt("allowed.txt"))
	q := r.openRequest("allow")
	if q.Tool != "Bash" || q.Summary != "touch allowed.txt" || q.ExpiresAt == "" {
		t.Errorf("request %+v", q)
	}
	if reqs := r.feed("allow", events.PermissionRequest); len(reqs) != 1 || reqs[0].RequestID != q.ID || reqs[0].Summary != "touch allowed.txt" {
		t.Errorf("permission_request events %+v", reqs)
	}
	r.d.WaitFor(func() bool {
		p := r.feed("allow", events.Progress)
		return len(p) == 1 && p[0].Tool == "Bash" && p[0].Summary == "touch allowed.txt"
	}, turnTimeout, "the running turn's progress event")
	if out, errOut, code := r.d.Run("permissions", "list"); code != 0 || !strings.Contains(out, q.ID) || !strings.Contains(out, "touch allowed.txt") {
		t.Errorf("permissions list: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := r.d.Run("permissions", "allow", q.ID); code != 0 || !strings.HasPrefix(out, "allow: ") {
		t.Fatalf("permissions allow: exit %d\n%s%s", code, out, errOut)
	}
	m := r.done(id)
	if !fileIn(dir, "allow", "allowed.txt") {
		t.Error("the allowed touch did not run")
	}
	if want := "fake reply after tools: Bash ok:"; !strings.HasPrefix(m.Reply, want) {
		t.Errorf("reply %q, want it to start with %q", m.Reply, want)
	}
	r.d.WaitFor(func() bool { return len(r.feed("allow", events.Progress)) == 0 }, turnTimeout, "progress gone with its turn")
	if dec := r.feed("allow", events.PermissionDecided); len(dec) != 1 || dec[0].Decision != "allow" || !strings.HasPrefix(dec[0].By, "cli") {
		t.Errorf("permission_decided events %+v", dec)
	}
	if _, _, code := r.d.Run("permissions", "deny", q.ID); code != 1 {
		t.Errorf("a second answer exited %d, want 1", code)
	}
	if _, _, code := r.d.Run("permissions", "allow", "no-such-request"); code != 1 {
		t.Errorf("an unknown request exited %d, want 1", code)
	}

	// deny, through the API
	id = r.send("deny", touchPrompt("denied.txt"))
	q = r.openRequest("deny")
	if st, data := r.d.Post("/v1/permissions/"+q.ID, wire.DecisionIn{Decision: "deny"}); st != 200 {
		t.Fatalf("deny: HTTP %d %s", st, data)
	}
	if st, _ := r.d.Post("/v1/permissions/"+q.ID, wire.DecisionIn{Decision: "allow"}); st != 409 {
		t.Errorf("a second answer: HTTP %d, want 409", st)
	}
	m = r.done(id)
	if fileIn(dir, "deny", "denied.txt") {
		t.Error("the denied touch ran")
	}
	if want := "fake reply after tools: Bash error: The person denied this tool call."; m.Reply != want {
		t.Errorf("reply %q, want %q", m.Reply, want)
	}

	// allow --always: the next call of the tool is not asked about
	id = r.send("always", touchPrompt("one.txt"))
	q = r.openRequest("always")
	if out, errOut, code := r.d.Run("permissions", "allow", "--always", q.ID); code != 0 {
		t.Fatalf("permissions allow --always: exit %d\n%s%s", code, out, errOut)
	}
	r.done(id)
	if out, _, code := r.d.Run("permissions", "rules"); code != 0 || !strings.Contains(out, "always") || !strings.Contains(out, "Bash") {
		t.Errorf("permissions rules: exit %d\n%s", code, out)
	}
	m = r.done(r.send("always", touchPrompt("two.txt")))
	if !fileIn(dir, "always", "two.txt") || !strings.HasPrefix(m.Reply, "fake reply after tools: Bash ok:") {
		t.Errorf("the second call under the rule: reply %q", m.Reply)
	}
	if reqs := r.feed("always", events.PermissionRequest); len(reqs) != 1 {
		t.Errorf("%d requests under an allow_always rule, want the first only", len(reqs))
	}
	if _, _, code := r.d.Run("permissions", "rm", "always", "Bash"); code != 0 {
		t.Errorf("permissions rm exited %d", code)
	}
	// Progress was on the feed while the turn ran, and went with it.
	if p := r.feed("always", events.Progress); len(p) != 0 {
		t.Errorf("progress events kept after their turns: %+v", p)
	}
}

// TestPermissionTimeout: nobody answers; after agent.permission_timeout
// the call is refused, the person is told (permission_decided expired,
// timeout) and the turn finishes.
func TestPermissionTimeout(t *testing.T) {
	t.Parallel()
	r, dir := askRig(t, map[string]any{"agent.permission_timeout": "2s"})
	m := r.done(r.send("late", touchPrompt("late.txt")))
	if fileIn(dir, "late", "late.txt") {
		t.Error("the unanswered touch ran")
	}
	if !strings.Contains(m.Reply, "Nobody answered the permission request within 2s") {
		t.Errorf("reply %q", m.Reply)
	}
	dec := r.feed("late", events.PermissionDecided)
	if len(dec) != 1 || dec[0].Decision != "expired" || dec[0].Reason != "timeout" || dec[0].By != "dispatch" {
		t.Errorf("permission_decided %+v", dec)
	}
}

// TestPermissionDaemonKilled: the daemon is killed -9 while a request is
// open; after the restart that request is closed as expired and the turn,
// retried, asks again; allowing the new request finishes it.
func TestPermissionDaemonKilled(t *testing.T) {
	t.Parallel()
	r, dir := askRig(t, nil)
	id := r.send("killed", touchPrompt("after.txt"))
	first := r.openRequest("killed")
	r.d.Kill9()
	r.d.Restart()
	var again wire.PermissionOut
	r.d.WaitFor(func() bool {
		_, data := r.d.Get("/v1/permissions?chat=killed")
		var out wire.PermissionsOut
		_ = json.Unmarshal(data, &out)
		if len(out.Requests) == 1 && out.Requests[0].ID != first.ID {
			again = out.Requests[0]
			return true
		}
		return false
	}, turnTimeout, "the retried turn's new request")
	_, data := r.d.Get("/v1/permissions/" + first.ID)
	var old wire.PermissionOut
	if err := json.Unmarshal(data, &old); err != nil || old.Decision != "expired" || old.Reason != "daemon_restart" {
		t.Errorf("the request open at the kill: %s (%v)", data, err)
	}
	if st, data := r.d.Post("/v1/permissions/"+again.ID, wire.DecisionIn{Decision: "allow"}); st != 200 {
		t.Fatalf("allow: HTTP %d %s", st, data)
	}
	m := r.done(id)
	if !fileIn(dir, "killed", "after.txt") || !strings.HasPrefix(m.Reply, "fake reply after tools: Bash ok:") {
		t.Errorf("after the restart: reply %q", m.Reply)
	}
}
