package slack

import (
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
)

// FuzzRenderSplit renders arbitrary Markdown, splits it at a small limit
// and checks every part: it is within the limit and not only whitespace,
// its code fences are balanced, every &, < and > is an escape, a link or a
// quote marker, and the parts in order hold the whole text, with nothing
// but whitespace dropped at the cuts. The plain-text parts obey the same
// limit and escaping.
func FuzzRenderSplit(f *testing.F) {
	for _, s := range []string{
		"# Title\n\nSome **bold** and *italic* text with `code` and a [link](https://example.com).",
		"```go\nfunc main() {\n\tfmt.Println(\"<hi>\")\n}\n```\n\n- a\n- b\n\n> quote\n> more",
		"| a | b |\n|---|---|\n| 1 | 2 |",
		"***x*** **a *b* c** _snake_case_ ~~s~~ \\* <https://x.y> ![i](http://x/y.png)",
		"😀 emoji & entities &amp; <tags> <@U1> <!here> 1 < 2 > 0",
		"> ```\n> code in a quote\n> ```\n[a **b** c](https://x.io/|) foo**bar**baz",
		strings.Repeat("word ", 50) + "\n\n" + strings.Repeat("longword", 20),
	} {
		f.Add(s, uint16(40))
	}
	f.Fuzz(func(t *testing.T, md string, lim uint16) {
		limit := MinLimit + int(lim%300)
		segs := parseHTML(telegram.HTML(md))
		var doc []rune
		for _, s := range segs {
			doc = append(doc, s.text...)
		}
		full := func(s []seg) string { return render(s, true) }
		bare := func(s []seg) string { return render(s, false) }
		ranges := splitRanges(parseHTML(telegram.HTML(md)), limit, full, bare)
		at := 0
		for _, p := range ranges {
			checkPart(t, md, p.text, limit, true)
			if p.start < at || p.end <= p.start {
				t.Fatalf("part %+v after %d", p, at)
			}
			for _, r := range doc[at:p.start] {
				if !unicode.IsSpace(r) {
					t.Fatalf("Split(%q, %d) dropped %q", md, limit, string(doc[at:p.start]))
				}
			}
			at = p.end
		}
		for _, r := range doc[at:] {
			if !unicode.IsSpace(r) {
				t.Fatalf("Split(%q, %d) dropped the end %q", md, limit, string(doc[at:]))
			}
		}
		for _, p := range PlainText(md, limit) {
			checkPart(t, md, p, limit, false)
		}
	})
}

var (
	linkRE   = regexp.MustCompile(`<[^<>|\s]+(\|[^<>]*)?>`)
	escapeRE = regexp.MustCompile(`&(amp|lt|gt);`)
	quoteRE  = regexp.MustCompile(`(?m)^>( |$)`)
)

func checkPart(t *testing.T, md, p string, limit int, mrkdwn bool) {
	t.Helper()
	if utf16Len(p) > limit {
		t.Fatalf("part of %q is %d long, limit %d: %q", md, utf16Len(p), limit, p)
	}
	if strings.TrimSpace(p) == "" {
		t.Fatalf("empty part of %q", md)
	}
	rest := escapeRE.ReplaceAllString(p, "")
	if mrkdwn {
		if n := strings.Count(p, "```"); n%2 != 0 {
			t.Fatalf("part of %q has %d fences: %q", md, n, p)
		}
		rest = linkRE.ReplaceAllString(rest, "")
		rest = quoteRE.ReplaceAllString(rest, "")
	}
	if strings.ContainsAny(rest, "&<>") {
		t.Fatalf("part of %q has an unescaped &, < or >: %q", md, p)
	}
}
