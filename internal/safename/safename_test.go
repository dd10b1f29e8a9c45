package safename

import (
	"path/filepath"
	"strings"
	"testing"
)

// checkSafe asserts the properties every SafeName result must have.
func checkSafe(t *testing.T, chat, name string) {
	t.Helper()
	if name == "" || name == "." || name == ".." {
		t.Fatalf("Of(%q) = %q", chat, name)
	}
	if name[0] == '.' || name[0] == '-' {
		t.Fatalf("Of(%q) = %q starts with %q", chat, name, name[0])
	}
	if len(name) > 120 {
		t.Fatalf("Of(%q) = %q is %d bytes long", chat, name, len(name))
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isSafe(c) && c != '_' {
			t.Fatalf("Of(%q) = %q has %q", chat, name, c)
		}
	}
	dir := filepath.FromSlash("/state/logs/sessions")
	p := filepath.Join(dir, name+".log")
	if filepath.Dir(p) != dir {
		t.Fatalf("Of(%q) = %q escapes %s: %s", chat, name, dir, p)
	}
}

func TestOf(t *testing.T) {
	long := strings.Repeat("x", 256)
	cases := []struct {
		chat string
		want string // "" means: any hashed name
	}{
		{"alice", "alice"},
		{"Alice", "Alice"},
		{"family-group", "family-group"},
		{"+15551234567", "+15551234567"},
		{"master-bg", "master-bg"},
		{strings.Repeat("a", maxPlainLen), strings.Repeat("a", maxPlainLen)},
		{"signal:+1555", ""},
		{"../../etc/passwd", ""},
		{"a/b", ""},
		{"a_b", ""},
		{"..", ""},
		{".", ""},
		{"", ""},
		{"-rf", ""},
		{".hidden", ""},
		{"a b", ""},
		{"a\\b", ""},
		{"a\x00b", ""},
		{"日本語チャット", ""},
		{"\xff\xfe", ""},
		{"alice-2026-01-01T00-00-00.000-size", ""}, // looks like a timberjack backup of "alice"
		{long, ""},
		{long[:255] + "y", ""},
		{strings.Repeat("a", maxPlainLen+1), ""},
	}
	seen := map[string]string{}
	for _, c := range cases {
		name := Of(c.chat)
		checkSafe(t, c.chat, name)
		if c.want != "" && name != c.want {
			t.Errorf("Of(%q) = %q, want %q", c.chat, name, c.want)
		}
		if c.want == "" && !strings.Contains(name, "_") {
			t.Errorf("Of(%q) = %q, want a hashed name", c.chat, name)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("Of(%q) = Of(%q) = %q", c.chat, other, name)
		}
		seen[name] = c.chat
		if again := Of(c.chat); again != name {
			t.Errorf("Of(%q) not stable: %q then %q", c.chat, name, again)
		}
	}
	if got := Of("signal:+1555"); !strings.HasPrefix(got, "signal_+1555_") {
		t.Errorf("Of(signal:+1555) = %q, want a readable prefix", got)
	}
}

// TestSafeNameInjective maps a set of ids built to collide after
// sanitizing (same readable prefix, case, truncation) and expects no
// two to share a name.
func TestSafeNameInjective(t *testing.T) {
	var ids []string
	for _, base := range []string{"chat", "Chat", "CHAT", strings.Repeat("z", 120)} {
		for _, sep := range []string{"", ":", "/", "_", "__", ".", " ", "\t", "é", "-", "+"} {
			for _, tail := range []string{"", "1", "x", "_", "..", strings.Repeat("q", 200)} {
				ids = append(ids, base+sep+tail, sep+base+tail)
			}
		}
	}
	seen := map[string]string{}
	for _, id := range ids {
		if prev, ok := seen[id]; ok && prev == id {
			continue
		}
		name := Of(id)
		checkSafe(t, id, name)
		if other, ok := seen[name]; ok && other != id {
			t.Fatalf("Of(%q) = Of(%q) = %q", id, other, name)
		}
		seen[name] = id
	}
}

func FuzzOf(f *testing.F) {
	for _, s := range []string{"alice", "+15551234567", "signal:+1555", "family-group",
		"../../etc/passwd", "a/b", "..", ".", "", "A", "a", "a_b", "-x", strings.Repeat("é", 128)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := Of(a), Of(b)
		checkSafe(t, a, na)
		checkSafe(t, b, nb)
		if a != b && na == nb {
			t.Fatalf("Of(%q) = Of(%q) = %q", a, b, na)
		}
	})
}
