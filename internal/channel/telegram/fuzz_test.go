package telegram

import (
	"strings"
	"testing"
	"unicode"

	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// FuzzRenderSplit renders arbitrary Markdown, splits it at a small limit and
// checks every part against the fake Telegram's parser: each part parses,
// is within the limit, is not only whitespace, and the parts in order are
// the whole text, with nothing but whitespace dropped at the cuts. The
// plain-text fallback of each part is within the limit too.
func FuzzRenderSplit(f *testing.F) {
	for _, s := range []string{
		"# Title\n\nSome **bold** and *italic* text with `code` and a [link](https://example.com).",
		"```go\nfunc main() {\n\tfmt.Println(\"<hi>\")\n}\n```\n\n- a\n- b\n\n> quote\n> more",
		"| a | b |\n|---|---|\n| 1 | 2 |",
		"***x*** **a *b* c** _snake_case_ ~~s~~ \\* <https://x.y> ![i](http://x/y.png)",
		"😀 emoji & entities &amp; <tags> 1 < 2 > 0",
		strings.Repeat("word ", 50) + "\n\n" + strings.Repeat("longword", 20),
	} {
		f.Add(s, uint16(40))
	}
	f.Fuzz(func(t *testing.T, md string, lim uint16) {
		limit := 2 + int(lim%300)
		html := HTML(md)
		whole, _, err := faketelegram.ParseHTML(html)
		if err != nil {
			t.Fatalf("HTML(%q) = %q, refused: %v", md, html, err)
		}
		checkEntities(t, html)
		parts, err := Split(html, limit)
		if err != nil {
			t.Fatalf("Split(%q): %v", html, err)
		}
		pos := []rune(whole)
		at := 0
		for i, p := range parts {
			text, _, err := faketelegram.ParseHTML(p)
			if err != nil {
				t.Fatalf("part %d %q refused: %v", i, p, err)
			}
			checkEntities(t, p)
			if n := faketelegram.UTF16Len(text); n > limit {
				t.Fatalf("part %d has %d units > %d: %q", i, n, limit, p)
			}
			if strings.TrimSpace(text) == "" {
				t.Fatalf("part %d is only whitespace: %q", i, p)
			}
			plain, err := PlainText(p, limit)
			if err != nil || faketelegram.UTF16Len(plain) > limit {
				t.Fatalf("plain text of part %d: %q %v", i, plain, err)
			}
			// The part's text continues the whole text, after whitespace.
			tr := []rune(text)
			for !hasPrefix(pos[at:], tr) {
				if at >= len(pos) || !unicode.IsSpace(pos[at]) {
					t.Fatalf("part %d %q does not continue the text at %d: %q", i, text, at, string(pos[at:]))
				}
				at++
			}
			at += len(tr)
		}
		if rest := string(pos[at:]); strings.TrimSpace(rest) != "" {
			t.Fatalf("text lost after the last part: %q", rest)
		}
	})
}

func hasPrefix(s, p []rune) bool {
	if len(p) > len(s) {
		return false
	}
	for i := range p {
		if s[i] != p[i] {
			return false
		}
	}
	return true
}

// checkEntities checks that every '&' in html starts one of the entities
// the renderer writes, so the HTML never leans on the server's leniency.
func checkEntities(t *testing.T, html string) {
	t.Helper()
	for i := strings.IndexByte(html, '&'); i >= 0; {
		rest := html[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") && !strings.HasPrefix(rest, "&quot;") {
			t.Fatalf("bare & in %q at %d", html, i)
		}
		j := strings.IndexByte(html[i+1:], '&')
		if j < 0 {
			break
		}
		i += 1 + j
	}
}

// FuzzParseCallbackData: any callback_data (it comes from the network)
// parses without panicking; what parses is within Telegram's 64 bytes,
// a person's decision, and exactly the button dispatch would make.
func FuzzParseCallbackData(f *testing.F) {
	for _, s := range []string{"p:1:0b6f4c1e-8f0a-4d0e-9a51-3f1c2e7d9b10", "p:a:x", "p:d:", "p:x:y", "p:1:a:b", "", "p:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		d, id, ok := ParseCallbackData(data)
		if !ok {
			return
		}
		if len(data) > MaxCallbackData {
			t.Fatalf("%d bytes parsed", len(data))
		}
		again, ok := CallbackData(d, id)
		if !ok || again != data {
			t.Fatalf("%q parsed as %s %q, which makes %q", data, d, id, again)
		}
	})
}
