package claude

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// The real Claude Code CLI on two nodes sharing one PostgreSQL database,
// each with its own home folder: after the owner of a chat is killed
// (kill -9), the other node takes the chat over, puts the conversation
// files saved in the database into its own home and resumes, so its first
// request to the API carries the earlier conversation.
func TestClaudeConversationMovesWithChat(t *testing.T) {
	bin := claudeBin(t)
	dsn := pgtest.NewDatabase(t)
	api := fakeapi.New()
	if err := api.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	var nodes []*daemontest.Daemon
	for _, id := range []string{"node-a", "node-b"} {
		home := t.TempDir()
		cfg := cliConfig(bin, api.URL(), home)
		maps.Copy(cfg, map[string]any{
			"store.driver":   "postgres",
			"store.dsn":      dsn,
			"node.id":        id,
			"node.lease_ttl": "3s",
		})
		nodes = append(nodes, daemontest.Start(t, daemontest.Options{Set: cfg}))
	}
	time.Sleep(1500 * time.Millisecond) // each node sees the other alive
	chat := "traveller"
	ask := func(d *daemontest.Daemon, text string) string {
		t.Helper()
		return d.WaitMessage(d.Send(chat, text), "done", turnTimeout).Reply
	}
	wantReply(t, ask(nodes[0], "first"), "first", 1)
	wantReply(t, ask(nodes[1], "second"), "second", 2)
	owner, other := -1, -1
	for i, d := range nodes {
		if len(d.Events(chat, "adopt", "")) > 0 {
			owner, other = i, 1-i
		}
	}
	if owner < 0 {
		t.Fatal("no node took the chat")
	}
	nodes[owner].Kill9()
	reply := ask(nodes[other], "third")
	wantReply(t, reply, "third", 3)
	rec, ok := requestFor(api, "third")
	if !ok {
		t.Fatal("no request for the third message")
	}
	if got := userTexts(rec); !slices.Contains(got, "first") || !slices.Contains(got, "second") {
		t.Errorf("the new owner's request does not carry the earlier conversation: user texts %q", got)
	}
	if !strings.Contains(nodes[other].ManagerLog()+sessionLogText(nodes[other], chat), "restored the conversation") {
		t.Errorf("the new owner did not restore the saved conversation")
	}
	if s := nodes[other].MustSession(chat); s.Owner != "node-"+string("ab"[other]) {
		t.Errorf("status: %+v", s)
	}
}

// requestFor is the last request of api whose last user text is text.
func requestFor(api *fakeapi.Server, text string) (fakeapi.Recorded, bool) {
	reqs := api.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if u := userTexts(reqs[i]); len(u) > 0 && u[len(u)-1] == text {
			return reqs[i], true
		}
	}
	return fakeapi.Recorded{}, false
}

// sessionLogText is the text of every session log of d.
func sessionLogText(d *daemontest.Daemon, _ string) string {
	files, _ := filepath.Glob(filepath.Join(d.StateDir, "logs", "sessions", "*"))
	var b strings.Builder
	for _, f := range files {
		b.WriteString(readFile(f))
	}
	return b.String()
}
