package channel_test

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/channel"
)

// FuzzInboxName: whatever name a sender gives a file, the inbox name is one
// path element of safe characters, never hidden, never "." or "..", and
// never longer than the channel, the update and 100 bytes.
func FuzzInboxName(f *testing.F) {
	for _, s := range []string{"report.pdf", "../../etc/passwd", "", "..", ".bashrc", "a/b\\c", "Übersicht.xlsx", strings.Repeat("x.", 200)} {
		f.Add(int64(7), s)
	}
	f.Fuzz(func(t *testing.T, update int64, name string) {
		got := channel.InboxName("telegram", update, name)
		rest := strings.TrimPrefix(got, "telegram-")
		_, safe, ok := strings.Cut(strings.TrimPrefix(rest, "-"), "-")
		if !ok || safe == "" || len(safe) > 100 || strings.HasPrefix(safe, ".") || strings.HasPrefix(safe, "-") {
			t.Fatalf("InboxName(%q) = %q", name, got)
		}
		if filepath.Base(got) != got || got == "." || got == ".." || !utf8.ValidString(got) {
			t.Fatalf("InboxName(%q) = %q is not one path element", name, got)
		}
		for _, r := range safe {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				t.Fatalf("InboxName(%q) = %q has %q", name, got, r)
			}
		}
	})
}
