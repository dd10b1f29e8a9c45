package faketelegram_test

import (
	"testing"

	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// FuzzParseHTML feeds the fake's HTML parser arbitrary text: it must not
// panic, and what it accepts has entities inside the text, in order.
func FuzzParseHTML(f *testing.F) {
	for _, s := range []string{
		"<b>bold <i>both</i></b> &lt;&amp;&#128512;&#x1F600;",
		`<a href="https://x.y/?a&amp;b">l</a><pre><code class="language-go">x</code></pre>`,
		"<blockquote expandable>q</blockquote><span class=\"tg-spoiler\">s</span>",
		"<b", "</b>", "<b>x</i>", "a & b < c", "<a href=x y=z>t</a>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		text, ents, err := faketelegram.ParseHTML(in)
		if err != nil {
			return
		}
		n := faketelegram.UTF16Len(text)
		last := -1
		for _, e := range ents {
			if e.Offset < 0 || e.Length <= 0 || e.Offset+e.Length > n || e.Offset < last {
				t.Fatalf("%q: entity %+v out of text of %d units (or out of order)", in, e, n)
			}
			last = e.Offset
		}
	})
}
