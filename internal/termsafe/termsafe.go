// Package termsafe makes text that came from someone else — message texts,
// replies, agent output, error strings — safe to print on an operator's
// terminal. Control characters (C0, DEL, C1), invalid UTF-8 and the
// Unicode bidirectional overrides are shown escaped (\x1b, \u009b, \xff),
// so that no text can clear the screen, move the cursor, set the window
// title, write the clipboard (OSC 52) or make a line read differently from
// what it holds.
package termsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Line escapes s for one table cell or one line: newlines and tabs are
// escaped too (\n, \t).
func Line(s string) string { return escape(s, false) }

// Text escapes s for multi-line output: newlines and tabs are kept, every
// other control character is escaped (a carriage return too: it could
// overwrite what a line showed).
func Text(s string) string { return escape(s, true) }

func escape(s string, keepLayout bool) string {
	if clean(s, keepLayout) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLayout && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// clean reports whether s needs no escaping (the common case: no copy).
func clean(s string, keepLayout bool) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return false
		case keepLayout && (r == '\n' || r == '\t'):
		case r < 0x20 || r == 0x7f || unsafeRune(r):
			return false
		}
		i += size
	}
	return true
}

// unsafeRune: C1 controls, line and paragraph separators, and the
// bidirectional embedding, override and isolate controls.
func unsafeRune(r rune) bool {
	return (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
