package claude

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dispatchd/dispatch/internal/store"
)

// memConv is Conversations in memory, recording every change saved.
type memConv struct {
	mu      sync.Mutex
	files   map[string][]byte
	changes []store.ConvChange
}

// file is the saved content of path.
func (m *memConv) file(path string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[path]
}

func (m *memConv) ConversationFiles(_ context.Context, _ string) ([]store.ConvFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.ConvFile
	for p, b := range m.files {
		out = append(out, store.ConvFile{Path: p, Size: int64(len(b)), Hash: sum(b)})
	}
	return out, nil
}

func (m *memConv) SaveConversation(_ context.Context, _ string, cs []store.ConvChange) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		m.changes = append(m.changes, c)
		if c.Replace {
			m.files[c.Path] = append([]byte(nil), c.Data...)
		} else {
			m.files[c.Path] = append(m.files[c.Path][:c.Offset], c.Data...)
		}
	}
	return nil
}

func (m *memConv) LoadConversation(context.Context, string) (map[string][]byte, error) {
	return m.files, nil
}

func sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// A save sends only what a file gained since the last one (the transcript
// is appended to), the whole file when it changed otherwise, nothing when
// nothing changed; a restore writes the saved files where the local copy
// is missing or not ahead of them.
func TestConversationSaveRestore(t *testing.T) {
	ctx := context.Background()
	pdir := filepath.Join(t.TempDir(), "projects", "-w-chat")
	mem := &memConv{files: map[string][]byte{}}
	write := func(rel, s string) {
		p := filepath.Join(pdir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := saveConversation(ctx, mem, "c", pdir); err != nil || n != 0 {
		t.Fatalf("save of a missing folder: %d %v", n, err)
	}
	write("id.jsonl", "line1\n")
	write("id/tool-results/x.txt", "x")
	if _, err := saveConversation(ctx, mem, "c", pdir); err != nil {
		t.Fatal(err)
	}
	write("id.jsonl", "line1\nline2\n")
	mem.changes = nil
	if n, err := saveConversation(ctx, mem, "c", pdir); err != nil || n != len("line2\n") {
		t.Fatalf("append: sent %d bytes, %v", n, err)
	}
	if c := mem.changes; len(c) != 1 || c[0].Replace || c[0].Offset != 6 || string(c[0].Data) != "line2\n" {
		t.Fatalf("append saved %+v", c)
	}
	mem.changes = nil
	if n, _ := saveConversation(ctx, mem, "c", pdir); n != 0 || len(mem.changes) != 0 {
		t.Fatalf("nothing changed, yet saved %+v", mem.changes)
	}
	write("id.jsonl", "rewritten\n")
	if _, err := saveConversation(ctx, mem, "c", pdir); err != nil || !mem.changes[0].Replace {
		t.Fatalf("rewrite saved %+v %v", mem.changes, err)
	}

	// another node: an empty home gets the files; one ahead keeps its own
	other := filepath.Join(t.TempDir(), "projects", "-w-chat")
	if n, err := restoreConversation(ctx, mem, "c", other); err != nil || n != 2 {
		t.Fatalf("restore: %d %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "id.jsonl")); string(b) != "rewritten\n" {
		t.Fatalf("restored %q", b)
	}
	if err := os.WriteFile(filepath.Join(other, "id.jsonl"), []byte("rewritten\nmore\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, _ := restoreConversation(ctx, mem, "c", other); n != 0 {
		t.Fatalf("a local copy ahead of the saved one was overwritten")
	}
	mem.files["../evil"] = []byte("x")
	if _, err := restoreConversation(ctx, mem, "c", other); err == nil {
		t.Fatal("a path out of the folder was restored")
	}
}

// A turn whose last transcript entries land after its result line (as the
// CLI's do) is saved only once the transcript holds them: when Turn
// returns, the saved conversation has the turn and its entry. The agent's
// exit saves too.
func TestTurnSavedWithItsLateEntries(t *testing.T) {
	h := newHarness(t, "STUB_PROJECTS=1", "STUB_LATE_TRANSCRIPT=300ms")
	home := t.TempDir()
	h.cfg.Env["HOME"] = home
	h.cfg.Dir = t.TempDir()
	mem := &memConv{files: map[string][]byte{}}
	h.cfg.Conversations = mem
	id := "6c1e7a51-5a0e-4c25-9d7b-2c5e7f0c1b11"
	p := h.start(id, false)
	mustTurn(t, p, "echo: remember the word PLUM (turn 1)", "remember the word PLUM")
	if got := string(mem.file(id + ".jsonl")); !strings.Contains(got, "PLUM") {
		t.Errorf("saved conversation when the turn returned: %q, want the turn", got)
	}
	if got := string(mem.file(id + ".entries.jsonl")); !strings.Contains(got, `"uuid"`) {
		t.Errorf("saved entries when the turn returned: %q, want the turn's", got)
	}
	// a line written after the last save is saved at the exit
	pdir := projectDir([]string{"HOME=" + home}, ChatDir(h.cfg.Dir, "chat"))
	f, err := os.OpenFile(filepath.Join(pdir, id+".entries.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{\"type\":\"last-prompt\"}\n")
	f.Close()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := string(mem.file(id + ".entries.jsonl")); !strings.Contains(got, "last-prompt") {
		t.Errorf("saved entries after the exit: %q", got)
	}
}
