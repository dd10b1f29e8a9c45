package channel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/channel"
)

func TestInboxName(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"report.pdf", "tg-7-report.pdf"},
		{"../../etc/passwd", "tg-7-etc_passwd"},
		{"/abs/path.txt", "tg-7-abs_path.txt"},
		{"..", "tg-7-file"},
		{"", "tg-7-file"},
		{".bashrc", "tg-7-bashrc"},
		{"-rf", "tg-7-rf"},
		{"Übersicht 2026.xlsx", "tg-7-bersicht_2026.xlsx"},
		{"a\x00b\nc.txt", "tg-7-a_b_c.txt"},
		{"back\\slash", "tg-7-back_slash"},
		{strings.Repeat("x", 300) + ".tar.gz", "tg-7-" + strings.Repeat("x", 97) + ".gz"},
	}
	for _, tt := range tests {
		got := channel.InboxName("tg", 7, tt.name)
		if got != tt.want {
			t.Errorf("InboxName(%q) = %q, want %q", tt.name, got, tt.want)
		}
		if strings.ContainsAny(got, "/\\\x00") || got == "." || got == ".." {
			t.Errorf("InboxName(%q) = %q is not one safe path element", tt.name, got)
		}
	}
}

func TestAttachedText(t *testing.T) {
	if got := channel.AttachedText("look at this", "inbox/x.jpg"); got != "look at this\n[attached: inbox/x.jpg]" {
		t.Fatalf("%q", got)
	}
	if got := channel.AttachedText(" ", "inbox/x.jpg"); got != "[attached: inbox/x.jpg]" {
		t.Fatalf("%q", got)
	}
	if got := channel.TooBigText(25<<20, 20<<20); !strings.Contains(got, "25 MiB") || !strings.Contains(got, "20 MiB") {
		t.Fatalf("%q", got)
	}
}

func TestFileMarkers(t *testing.T) {
	tests := []struct {
		in, rest string
		paths    []string
	}{
		{"no files", "no files", nil},
		{"Here it is: [[file: out/report.pdf]]", "Here it is:", []string{"out/report.pdf"}},
		{"Two:\n\n[[file: a.txt]]\n\n[[file:b.txt]]\n\nbye", "Two:\n\nbye", []string{"a.txt", "b.txt"}},
		{"[[file: only.png]]", "", []string{"only.png"}},
		{"[[file: with space.txt ]] done", "done", []string{"with space.txt"}},
		{"[[file: ]]", "", []string{""}},
		{"not [[file: a\nb]] one", "not [[file: a\nb]] one", nil},
	}
	for _, tt := range tests {
		rest, paths := channel.FileMarkers(tt.in)
		if rest != tt.rest || fmt.Sprint(paths) != fmt.Sprint(tt.paths) {
			t.Errorf("FileMarkers(%q) = %q %q, want %q %q", tt.in, rest, paths, tt.rest, tt.paths)
		}
	}
	var many strings.Builder
	for i := range 12 {
		fmt.Fprintf(&many, "[[file: f%d]] ", i)
	}
	rest, paths := channel.FileMarkers(many.String())
	if len(paths) != 10 || rest != "[[file: f10]] [[file: f11]]" {
		t.Fatalf("more than 10 markers: %q %q", rest, paths)
	}
}

func TestInboxNameKey(t *testing.T) {
	tests := []struct{ key, name, want string }{
		{"1700000000.000100-F0ABC", "notes.txt", "slack-1700000000.000100-F0ABC-notes.txt"},
		{"../x/../F1", "../../etc/passwd", "slack-.._x_.._F1-etc_passwd"},
		{"ts", "", "slack-ts-file"},
	}
	for _, tt := range tests {
		got := channel.InboxNameKey("slack", tt.key, tt.name)
		if got != tt.want || strings.ContainsAny(got, "/\\\x00") {
			t.Errorf("InboxNameKey(%q, %q) = %q, want %q", tt.key, tt.name, got, tt.want)
		}
	}
}

// TestSavedRemovesLeftPart: a daemon killed between the link and the
// removal of the temporary file leaves both; finding the file saved
// removes the temporary one.
func TestSavedRemovesLeftPart(t *testing.T) {
	dir := t.TempDir()
	inbox, err := channel.EnsureInbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer inbox.Close()
	for _, n := range []string{"a.txt", ".a.txt.part"} {
		if err := os.WriteFile(filepath.Join(dir, channel.InboxDir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := channel.Saved(inbox, "a.txt"); !ok || err != nil {
		t.Fatalf("saved %v %v", ok, err)
	}
	if es, _ := os.ReadDir(filepath.Join(dir, channel.InboxDir)); len(es) != 1 || es[0].Name() != "a.txt" {
		t.Fatalf("inbox %v", es)
	}
}
