package telegram

import (
	"strings"
	"testing"
)

func TestHTML(t *testing.T) {
	for _, tc := range []struct{ name, md, want string }{
		{"plain", "hello world", "hello world"},
		{"escapes", "a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"},
		{"raw html shown", "<div>x</div>", "&lt;div&gt;x&lt;/div&gt;"},
		{"heading", "## Plan *now*", "<b>Plan <i>now</i></b>"},
		{"bold italic", "**bold** and *it* and _it_ and ***both***", "<b>bold</b> and <i>it</i> and <i>it</i> and <i><b>both</b></i>"},
		{"snake_case stays", "use snake_case_names and 2*3*4", "use snake_case_names and 2<i>3</i>4"},
		{"lone markers", "a * b _ c ** d", "a * b _ c ** d"},
		{"unclosed", "**not closed", "**not closed"},
		{"strike", "~~old~~ and ~5 min", "<s>old</s> and ~5 min"},
		{"code span", "run `rm -rf <dir>` now", "run <code>rm -rf &lt;dir&gt;</code> now"},
		{"code span keeps markers", "`**x**` and ``a`b``", "<code>**x**</code> and <code>a`b</code>"},
		{"escaped", `\*not italic\* \_x\_`, "*not italic* _x_"},
		{"link", "see [the docs](https://x.y/a?b=1&c=2)", `see <a href="https://x.y/a?b=1&amp;c=2">the docs</a>`},
		{"link with code", "[`main.go`](https://x.y)", `<a href="https://x.y">main.go</a>`},
		{"relative link", "[main.go](src/main.go)", "main.go (src/main.go)"},
		{"autolink", "<https://example.com/x>", `<a href="https://example.com/x">https://example.com/x</a>`},
		{"image", "![diagram](https://x.y/d.png)", `<a href="https://x.y/d.png">diagram</a>`},
		{"fence with language", "```go\nif a < b {\n}\n```", "<pre><code class=\"language-go\">if a &lt; b {\n}</code></pre>"},
		{"fence without language", "~~~\n**x**\n~~~", "<pre>**x**</pre>"},
		{"unclosed fence", "```sh\necho hi", "<pre><code class=\"language-sh\">echo hi</code></pre>"},
		{"indented fence in list", "1. step\n   ```bash\n   make\n   ```", "1. step\n\n<pre><code class=\"language-bash\">make</code></pre>"},
		{"list", "- one\n- **two**\n  - nested\n3) three", "• one\n• <b>two</b>\n  • nested\n3) three"},
		{"tasks", "- [ ] todo\n- [x] done", "☐ todo\n☑ done"},
		{"quote", "> quoted *text*\n> > nested\n\nafter", "<blockquote>quoted <i>text</i>\n\nnested</blockquote>\n\nafter"},
		{"rule", "a\n\n---\n\nb", "a\n\n———\n\nb"},
		{"paragraphs", "one\ntwo  \n\n\n\nthree", "one\ntwo\n\nthree"},
		{"table", "| Name | Value |\n|------|------:|\n| a | **1** |\n| long name | 22 |",
			"<pre>Name      │ Value\n──────────┼──────\na         │ 1\nlong name │ 22</pre>"},
		{"hashtag not heading", "#hashtag", "#hashtag"},
		{"not a table: columns differ", "a | b\n---", "a | b\n\n———"},
		{"crlf", "a\r\nb", "a\nb"},
	} {
		if got := HTML(tc.md); got != tc.want {
			t.Errorf("%s: HTML(%q)\n got %q\nwant %q", tc.name, tc.md, got, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		html  string
		limit int
		want  []string
	}{
		{"fits", "<b>short</b>", 10, []string{"<b>short</b>"}},
		{"markup does not count", "<b>12345</b>", 5, []string{"<b>12345</b>"}},
		{"entities count once", "&lt;&lt;&lt;", 3, []string{"&lt;&lt;&lt;"}},
		{"paragraph first", "aaa bbb\nccc\n\nddd", 12, []string{"aaa bbb\nccc", "ddd"}},
		{"then line", "aaa bbb\nccc ddd", 10, []string{"aaa bbb", "ccc ddd"}},
		{"then word", "aaa bbb ccc", 8, []string{"aaa bbb", "ccc"}},
		{"hard cut of a long word", "abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"surrogate pairs", "😀😀😀", 4, []string{"😀😀", "😀"}},
		{"reopen tags", "<b>aaa <i>bbb ccc</i></b>", 7, []string{"<b>aaa <i>bbb</i></b>", "<b><i>ccc</i></b>"}},
		{"code block split keeps language", "<pre><code class=\"language-go\">line1\nline2</code></pre>", 8,
			[]string{"<pre><code class=\"language-go\">line1</code></pre>", "<pre><code class=\"language-go\">line2</code></pre>"}},
		{"link reopened with href", `<a href="https://x.y/?a&amp;b">one two</a>`, 4,
			[]string{`<a href="https://x.y/?a&amp;b">one</a>`, `<a href="https://x.y/?a&amp;b">two</a>`}},
		{"escapes survive", "a&amp;b c&lt;d", 4, []string{"a&amp;b", "c&lt;d"}},
		{"whitespace-only parts dropped", "a\n\n\n\n          \n\nb", 2, []string{"a", "b"}},
	} {
		got, err := Split(tc.html, tc.limit)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: Split(%q, %d) = %q, %v; want %q", tc.name, tc.html, tc.limit, got, err, tc.want)
		}
	}
	for _, bad := range []string{"<b>x", "<h1>x</h1>", "a & b", "</b>", "<b>x</i>"} {
		if _, err := Split(bad, 10); err == nil {
			t.Errorf("Split(%q) accepted it", bad)
		}
	}
}

func TestSplitLongReply(t *testing.T) {
	// A 10,000-character reply as an agent writes it: paragraphs, a long
	// code block, a list.
	var md strings.Builder
	for i := range 20 {
		md.WriteString("Paragraph with **bold** words and `code` that goes on for a while, number ")
		md.WriteString(strings.Repeat("x", i))
		md.WriteString(".\n\n")
	}
	md.WriteString("```go\n")
	for range 150 {
		md.WriteString("fmt.Println(\"a line of code in a long block\")\n")
	}
	md.WriteString("```\n\n- item one\n- item two\n")
	html := HTML(md.String())
	parts, err := Split(html, MaxMessageLen)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, p := range parts {
		text, _, err := parse(p)
		if err != nil || utf16Len(text) > MaxMessageLen {
			t.Fatalf("part %d: %d units, %v", i, utf16Len(text), err)
		}
		if strings.Contains(p, "fmt.Println") && !strings.HasPrefix(strings.TrimLeft(p[strings.Index(p, "<pre>"):], " "), `<pre><code class="language-go">`) {
			t.Errorf("part %d holds code outside its block", i)
		}
	}
}

func TestPlainText(t *testing.T) {
	for _, tc := range []struct {
		html  string
		limit int
		want  string
	}{
		{"<b>bold</b> &lt;tag&gt; &amp; <code>x</code>", 0, "bold <tag> & x"},
		{`see <a href="https://x.y">the <b>docs</b></a>.`, 0, "see the docs (https://x.y)."},
		{`<a href="https://x.y">https://x.y</a>`, 0, "https://x.y"},
		{`<a href="https://x.y">docs</a>`, 10, "docs"},
		{`<pre><code class="language-go">a := 1</code></pre>`, 0, "a := 1"},
	} {
		got, err := PlainText(tc.html, tc.limit)
		if err != nil || got != tc.want {
			t.Errorf("PlainText(%q, %d) = %q, %v; want %q", tc.html, tc.limit, got, err, tc.want)
		}
	}
}

// TestHTMLReply renders a reply as Claude writes one, end to end.
func TestHTMLReply(t *testing.T) {
	md := "## Summary\n\nI fixed the bug in `internal/store/sqlite.go` — the **retry loop** never backed off.\n\n" +
		"### Changes\n\n1. Added `backoff()`:\n   ```go\n   func backoff(n int) time.Duration {\n       return time.Duration(1<<n) * time.Millisecond\n   }\n   ```\n" +
		"2. Updated the tests (see [the PR](https://github.com/x/y/pull/1)).\n\n> **Note:** this changes behaviour when `n > 30`.\n\n" +
		"| File | Lines |\n|---|---|\n| `sqlite.go` | +12 −3 |\n| `sqlite_test.go` | +40 |\n\n" +
		"Let me know if you'd like *more* changes_now or a __different__ approach. Cost: ~$0.02 & 3 < 4."
	want := "<b>Summary</b>\n\nI fixed the bug in <code>internal/store/sqlite.go</code> — the <b>retry loop</b> never backed off.\n\n" +
		"<b>Changes</b>\n\n1. Added <code>backoff()</code>:\n\n<pre><code class=\"language-go\">func backoff(n int) time.Duration {\n    return time.Duration(1&lt;&lt;n) * time.Millisecond\n}</code></pre>\n\n" +
		"2. Updated the tests (see <a href=\"https://github.com/x/y/pull/1\">the PR</a>).\n\n<blockquote><b>Note:</b> this changes behaviour when <code>n &gt; 30</code>.</blockquote>\n\n" +
		"<pre>File           │ Lines\n───────────────┼───────\nsqlite.go      │ +12 −3\nsqlite_test.go │ +40</pre>\n\n" +
		"Let me know if you'd like <i>more</i> changes_now or a <b>different</b> approach. Cost: ~$0.02 &amp; 3 &lt; 4."
	if got := HTML(md); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	plain, err := PlainText(want, MaxMessageLen)
	if err != nil || !strings.Contains(plain, "(see the PR (https://github.com/x/y/pull/1))") || !strings.Contains(plain, "1<<n") {
		t.Errorf("plain text %q %v", plain, err)
	}
}
