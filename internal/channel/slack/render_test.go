package slack

import (
	"strings"
	"testing"
)

func TestMrkdwn(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"heading", "# Title\n\ntext", "*Title*\n\ntext"},
		{"emphasis", "**b** *i* _i_ ~~s~~", "*b* _i_ _i_ ~s~"},
		{"code span escaped", "`a<b>&c`", "`a&lt;b&gt;&amp;c`"},
		{"backtick in code span", "``a`b``", "`aˋb`"},
		{"escapes", "1 < 2 & 3 > 2", "1 &lt; 2 &amp; 3 &gt; 2"},
		{"mentions are text", "<@U123> <!channel>", "&lt;@U123&gt; &lt;!channel&gt;"},
		{"fenced block", "```go\nx := a < b\n```", "```\nx := a &lt; b\n```"},
		{"triple backticks inside a block", "````\na ``` b\n````", "```\na `\u200b`` b\n```"},
		{"link", "[docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&amp;c=2|docs>"},
		{"bare link", "<https://x.io>", "<https://x.io>"},
		{"pipe in url", "[t](https://x.io/a|b)", "<https://x.io/a%7Cb|t>"},
		{"relative link", "[t](./a.md)", "t (./a.md)"},
		{"bold link", "**[t](https://x.io)**", "*<https://x.io|t>*"},
		{"list", "- a\n- **b**\n  - c\n1. d", "• a\n• *b*\n  • c\n1. d"},
		{"task list", "- [ ] a\n- [x] b", "☐ a\n☑ b"},
		{"quote", "> a **b**\n>\n> c\n\nd", "> a *b*\n>\n> c\n\nd"},
		{"mid-word emphasis", "foo**bar**baz", "foo\u200b*bar*\u200bbaz"},
		{"nested emphasis", "**a _b_ c**", "*a* *_b_* *c*"},
		{"snake case stays", "snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"},
		{"literal markers defused", `\*not bold\* and \_x\_`, "∗not bold* and ＿x_"},
		{"whitespace outside markers", "** b **", "** b **"},
		{"table", "| a | b |\n|---|---|\n| 1 | 22 |", "```\na │ b\n──┼───\n1 │ 22\n```"},
		{"rule", "a\n\n---\n\nb", "a\n\n———\n\nb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mrkdwn(tc.in); got != tc.want {
				t.Errorf("Mrkdwn(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	long := strings.Repeat("word ", 20) // 100 characters
	for _, tc := range []struct {
		name  string
		in    string
		limit int
		want  []string
	}{
		{"fits", "short **reply**", 100, []string{"short *reply*"}},
		{"paragraphs", "first paragraph\n\nsecond paragraph", 32, []string{"first paragraph", "second paragraph"}},
		{"lines", "line one is here\nline two is here too", 32, []string{"line one is here", "line two is here too"}},
		{"words", strings.TrimSpace(long), 40, []string{"word word word word word word word word", "word word word word word word word word", "word word word word"}},
		{"a word longer than the limit", strings.Repeat("x", 70), 32, []string{strings.Repeat("x", 32), strings.Repeat("x", 32), strings.Repeat("x", 6)}},
		{"code block closed and reopened", "```\nline one\nline two\nline three\n```", 32, []string{"```\nline one\nline two\n```", "```\nline three\n```"}},
		{"bold reopened", "**" + strings.TrimSpace(long[:60]) + "**", 40, []string{"*word word word word word word word*", "*word word word word word*"}},
		{"quote continues", "> aaaa bbbb cccc dddd\n> eeee ffff gggg hhhh\n> iiii", 32, []string{"> aaaa bbbb cccc dddd", "> eeee ffff gggg hhhh\n> iiii"}},
		{"escapes count", strings.Repeat("<", 20), 40, []string{strings.Repeat("&lt;", 10), strings.Repeat("&lt;", 10)}},
		{"a link too long for the part is its text", "[see](https://example.com/" + strings.Repeat("p", 40) + ")", 32, []string{"see"}},
		{"whitespace only", " \n\n ", 32, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Split(tc.in, tc.limit)
			if strings.Join(got, "\x00") != strings.Join(tc.want, "\x00") {
				t.Errorf("Split(%q, %d)\n got %q\nwant %q", tc.in, tc.limit, got, tc.want)
			}
			for _, p := range got {
				if utf16Len(p) > max(tc.limit, MinLimit) {
					t.Errorf("part %q is %d long", p, utf16Len(p))
				}
			}
		})
	}
}

func TestSplitDefaultLimit(t *testing.T) {
	var b strings.Builder
	for i := range 400 {
		b.WriteString("Paragraph number ")
		b.WriteString(strings.Repeat("x", i%50))
		b.WriteString(" with **bold** and `code`.\n\n")
	}
	parts := Split(b.String(), MaxPartLen)
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, p := range parts {
		if utf16Len(p) > MaxPartLen {
			t.Errorf("part %d: %d", i, utf16Len(p))
		}
		if strings.HasPrefix(p, "\n") || strings.HasSuffix(p, "\n") {
			t.Errorf("part %d has whitespace at a cut: %q", i, p)
		}
	}
}

func TestPlainText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a [link](https://x.io) **b** `c` ~~d~~", "a link (https://x.io) b c d"},
		{"<https://x.io>", "https://x.io"},
		{"> q\n\n```\nx < y\n```", "&gt; q\n\nx &lt; y"},
		{"# H\n\n- a & b", "H\n\n• a &amp; b"},
	} {
		got := PlainText(tc.in, MaxPartLen)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("PlainText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := PlainText(strings.Repeat("abc ", 20), 32); len(got) != 3 {
		t.Errorf("plain split %q", got)
	}
}
