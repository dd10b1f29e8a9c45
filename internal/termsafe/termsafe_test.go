package termsafe

import "testing"

func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, line, text string }{
		{"hello, wörld 👋", "hello, wörld 👋", "hello, wörld 👋"},
		{"two\nlines\tand tab", `two\nlines\tand tab`, "two\nlines\tand tab"},
		{"\x1b[2J\x1b[H cleared", `\x1b[2J\x1b[H cleared`, `\x1b[2J\x1b[H cleared`},
		{"\x1b]52;c;ZXZpbA==\x07", `\x1b]52;c;ZXZpbA==\x07`, `\x1b]52;c;ZXZpbA==\x07`},
		{"over\rwrite", `over\rwrite`, `over\rwrite`},
		{"c1 \u009b2J", `c1 \u009b2J`, `c1 \u009b2J`},
		{"bidi \u202eevil", `bidi \u202eevil`, `bidi \u202eevil`},
		{"bad \xff byte", `bad \xff byte`, `bad \xff byte`},
		{"del\x7f", `del\x7f`, `del\x7f`},
	} {
		if got := Line(tt.in); got != tt.line {
			t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.line)
		}
		if got := Text(tt.in); got != tt.text {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.text)
		}
	}
}

func FuzzNoControlSurvives(f *testing.F) {
	f.Add("\x1b[31mred\x9b")
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Line(s), Text(s)} {
			for _, r := range out {
				if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffd && !containsReplacement(s) {
					t.Fatalf("%q escaped to %q still holds %U", s, out, r)
				}
			}
		}
		if out := Line(s); containsAny(out, "\n\t") {
			t.Fatalf("Line(%q) = %q keeps a newline or tab", s, out)
		}
	})
}

func containsReplacement(s string) bool {
	for _, r := range s {
		if r == 0xfffd {
			return true
		}
	}
	return false
}

func containsAny(s, chars string) bool {
	for _, r := range s {
		for _, c := range chars {
			if r == c {
				return true
			}
		}
	}
	return false
}
