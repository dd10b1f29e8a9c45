package claude

import (
	"os"
	"path/filepath"
	"testing"

	dclaude "github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/fakeapi"
)

// The real CLI works in the chat's own folder and files the conversation
// under that folder's project name, as ProjectSlug computes it; a
// conversation an earlier version kept under the shared working directory
// is moved there and --resume finds it.
func TestConversationMovesIntoTheChatsFolder(t *testing.T) {
	t.Parallel()
	r := start(t, fakeapi.ModeOK, nil)
	wantReply(t, r.ask("carol", "first"), "first", 1)
	sid := r.idle("carol").SessionID
	work := filepath.Join(r.d.StateDir, "work")
	chatDir := dclaude.ChatDir(work, "carol")
	newSlug, _ := dclaude.ProjectSlug(chatDir)
	oldSlug, _ := dclaude.ProjectSlug(work)
	projects := filepath.Join(r.home, ".claude", "projects")
	got, ok := r.transcript(sid)
	if want := filepath.Join(projects, newSlug, sid+".jsonl"); !ok || got != want {
		t.Fatalf("transcript at %q, want %q (the CLI's project name for the chat's folder)", got, want)
	}
	if code, _ := r.d.Term(); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}
	// Where the shared working directory of earlier versions kept it.
	if err := os.MkdirAll(filepath.Join(projects, oldSlug), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(got, filepath.Join(projects, oldSlug, sid+".jsonl")); err != nil {
		t.Fatal(err)
	}
	r.d.Restart()
	wantReply(t, r.ask("carol", "second"), "second", 2)
	if rec, ok := r.requestFor("second"); !ok {
		t.Error("no request for \"second\"")
	} else {
		inOrder(t, "request after the move", userTexts(rec), "first", "second")
	}
	if ev := r.events("carol", "resume_failed", ""); len(ev) > 0 {
		t.Errorf("resume failed: %v", ev)
	}
	if got, _ := r.transcript(sid); filepath.Dir(got) != filepath.Join(projects, newSlug) {
		t.Errorf("transcript now at %q, want it under %s", got, newSlug)
	}
}
