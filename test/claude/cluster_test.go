package claude

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// A chat's last turn moves with it: a single turn on the owner, then
// kill -9 of the owner the moment the reply is done. A turn is done only
// once its own transcript entries are saved (a CLI may write them after
// its result line), so at the kill the database holds the turn's answer,
// the other node resumes the conversation and its first request carries
// the earlier turn, question and answer.
func TestClaudeLastTurnMovesWithChat(t *testing.T) {
	bin := claudeBin(t)
	dsn := pgtest.NewDatabase(t)
	api := fakeapi.New()
	if err := api.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	var (
		nodes []*daemontest.Daemon
		homes []string
	)
	for _, id := range []string{"node-a", "node-b"} {
		homes = append(homes, t.TempDir())
		cfg := cliConfig(bin, api.URL(), homes[len(homes)-1])
		maps.Copy(cfg, map[string]any{
			"store.driver":   "postgres",
			"store.dsn":      dsn,
			"node.id":        id,
			"node.lease_ttl": "3s",
		})
		nodes = append(nodes, daemontest.Start(t, daemontest.Options{Set: cfg}))
	}
	time.Sleep(1500 * time.Millisecond) // each node sees the other alive
	chat := "plum"
	first := "remember the word PLUM"
	id := nodes[0].Send(chat, first)
	owner := -1
	daemontest.WaitFor(t, func() bool {
		for i, d := range nodes {
			if len(d.Events(chat, "adopt", "")) > 0 {
				owner = i
				return true
			}
		}
		return false
	}, turnTimeout, "a node taking the chat")
	d := nodes[owner]
	answer := d.WaitMessage(id, "done", turnTimeout).Reply
	d.Kill9()
	wantReply(t, answer, first, 1)
	// at the kill, the database holds every answer of the owner's
	// transcript
	saved := savedTranscripts(t, dsn, chat)
	local, _ := filepath.Glob(filepath.Join(homes[owner], ".claude", "projects", "*", "*.jsonl"))
	for _, f := range local {
		for line := range strings.Lines(readFile(f)) {
			var e struct{ Type, UUID string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Type == "assistant" && !strings.Contains(saved, `"uuid":"`+e.UUID+`"`) {
				t.Errorf("the owner's transcript entry %s (%s) was not saved when the turn was done", e.UUID, e.Type)
			}
		}
	}
	other := nodes[1-owner]
	next := "which word did I ask you to remember?"
	reply := other.WaitMessage(other.Send(chat, next), "done", turnTimeout).Reply
	rec, ok := requestFor(api, next)
	if !ok {
		t.Fatalf("no request for the second message")
	}
	var assistant []string
	for _, m := range rec.Request.Messages {
		if m.Role == "assistant" {
			assistant = append(assistant, strings.TrimSpace(m.Content.Text()))
		}
	}
	if got := userTexts(rec); !slices.Contains(got, first) || !slices.Contains(assistant, answer) {
		t.Errorf("the new owner's request does not carry the earlier turn: user texts %q, assistant texts %q", got, assistant)
	}
	wantReply(t, reply, next, 2)
}

// savedTranscripts is the text of chat's transcripts saved in the database.
func savedTranscripts(t *testing.T, dsn, chat string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT c.data FROM conversation_chunks c
		JOIN conversation_files f ON f.chat_id = c.chat_id AND f.path = c.path
		WHERE c.chat_id = $1 AND c.off < f.size AND f.path LIKE '%.jsonl' ORDER BY c.path, c.off`, chat)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		b.Write(d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
