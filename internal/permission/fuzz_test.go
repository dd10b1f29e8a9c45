package permission

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzSummary: whatever a tool's input holds, its summary is one bounded,
// printable, valid UTF-8 line.
func FuzzSummary(f *testing.F) {
	for _, s := range [][2]string{
		{"Bash", `{"command":"touch x"}`}, {"Write", `{"file_path":"/a","content":"x"}`},
		{"Edit", `{"file_path":1,"old_string":null}`}, {"AskUserQuestion", `{"questions":[1,{"question":"q"}]}`},
		{"MultiEdit", `{"edits":"x"}`}, {"x", `"\u001b]52;c;x\u0007"`}, {"Bash", "\xff\xfe"}, {"", ""},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, tool string, input []byte) {
		s := Summary(tool, json.RawMessage(input))
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8: %q", s)
		}
		if n := utf8.RuneCountInString(s); n > MaxSummary {
			t.Fatalf("%d runes", n)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 ||
				(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
				t.Fatalf("control %U in %q", r, s)
			}
		}
	})
}
