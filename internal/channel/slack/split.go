package slack

import (
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
)

// Split renders the agent's Markdown as mrkdwn (see Mrkdwn) in parts of
// at most limit UTF-16 code units each (MaxPartLen for the channel; a limit
// under MinLimit counts as MinLimit). It cuts at the last paragraph break
// (a blank line) that fits, else the last line break, else the last space,
// and cuts a word only when it alone is longer than the part; the
// whitespace at a cut is dropped and whitespace-only parts are left out.
// Each part is rendered on its own, so formatting open at a cut is closed
// at the end of one part and opened again in the next: a code block split
// over two messages is two complete code blocks, a quote continues as a
// quote. A link that alone does not fit is written as its text.
func Split(markdown string, limit int) []string {
	return splitWith(parseHTML(telegram.HTML(markdown)), limit, func(s []seg) string { return render(s, true) }, func(s []seg) string { return render(s, false) })
}

// PlainText renders the agent's Markdown as plain text in parts of at most
// limit UTF-16 code units, cut as Split cuts: for a message sent with
// mrkdwn=false, when formatting is not wanted or Slack refused a formatted
// message. Markers are dropped, a link is its text followed by its URL in
// parentheses, code blocks are their lines, quotes keep a leading "> ";
// &, < and > are still escaped, as Slack requires in any text.
func PlainText(markdown string, limit int) []string {
	return splitWith(parseHTML(telegram.HTML(markdown)), limit, func(s []seg) string { return plain(s, true) }, func(s []seg) string { return plain(s, false) })
}

// plain writes segments as plain text; urls false leaves links' URLs out.
func plain(segs []seg, urls bool) string {
	var b strings.Builder
	for i := 0; i < len(segs); {
		s := segs[i]
		j := i + 1
		if s.st&stQuote != 0 {
			for j < len(segs) && segs[j].st&stQuote != 0 {
				j++
			}
			inner := make([]seg, j-i)
			for k := range inner {
				inner[k] = segs[i+k]
				inner[k].st &^= stQuote
			}
			lines := strings.Split(strings.Trim(plain(inner, urls), "\n"), "\n")
			for k := range lines {
				lines[k] = strings.TrimRight("&gt; "+lines[k], " ")
			}
			b.WriteString(strings.Join(lines, "\n"))
			i = j
			continue
		}
		if s.href != "" {
			var text []rune
			for j = i; j < len(segs) && segs[j].href == s.href && segs[j].st&stQuote == 0; j++ {
				text = append(text, segs[j].text...)
			}
			b.WriteString(Escape(string(text)))
			if t := strings.TrimSpace(string(text)); urls && t != s.href {
				b.WriteString(" (" + Escape(s.href) + ")")
			}
			i = j
			continue
		}
		b.WriteString(Escape(string(s.text)))
		i = j
	}
	return b.String()
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// splitWith cuts segs into parts rendered by full, each within limit; a
// part of one character that full cannot fit is rendered by bare (links as
// text).
func splitWith(segs []seg, limit int, full, bare func([]seg) string) []string {
	var parts []string
	for _, r := range splitRanges(segs, limit, full, bare) {
		parts = append(parts, r.text)
	}
	return parts
}

type part struct {
	start, end int // runes of the document
	text       string
}

func splitRanges(segs []seg, limit int, full, bare func([]seg) string) []part {
	limit = max(limit, MinLimit)
	var runes []rune
	var owner []int
	for si, s := range segs {
		runes = append(runes, s.text...)
		for range s.text {
			owner = append(owner, si)
		}
	}
	n := len(runes)
	sub := func(a, b int) []seg {
		var out []seg
		for i := a; i < b; {
			j := i
			for j < b && owner[j] == owner[i] {
				j++
			}
			s := segs[owner[i]]
			out = append(out, seg{text: runes[i:j], st: s.st, href: s.href})
			i = j
		}
		return out
	}
	fits := func(a, b int) bool { return utf16Len(full(sub(a, b))) <= limit }
	var parts []part
	add := func(a, b int, text string) {
		if strings.TrimSpace(string(runes[a:b])) != "" {
			parts = append(parts, part{a, b, text})
		}
	}
	for start := 0; start < n; {
		// Rendering never makes a part shorter than its text, short of
		// whitespace folded in a link; so the furthest end that fits is
		// within a few limits.
		hi := min(n, start+4*limit)
		if hi == n && fits(start, n) {
			add(start, n, full(sub(start, n)))
			break
		}
		lo := start // fits (empty)
		if fits(start, hi) {
			lo = hi
		} else {
			for hi-lo > 1 {
				mid := (lo + hi) / 2
				if fits(start, mid) {
					lo = mid
				} else {
					hi = mid
				}
			}
		}
		if lo == start { // one character does not fit: its link is too long
			if si := owner[start]; segs[si].href != "" {
				href := segs[si].href
				for k := si; k < len(segs) && segs[k].href == href; k++ {
					segs[k].href = "" // the link becomes its text
				}
				continue
			}
			add(start, start+1, bare(sub(start, start+1)))
			start++
			continue
		}
		cut, next := cutPoint(runes, start, lo)
		for cut > start && unicode.IsSpace(runes[cut-1]) && cut < next {
			cut--
		}
		text := full(sub(start, cut))
		for utf16Len(text) > limit && cut > start+1 { // not expected; keep the promise anyway
			cut--
			next = cut
			text = full(sub(start, cut))
		}
		add(start, cut, text)
		start = next
	}
	return parts
}

// cutPoint chooses where a part from start that may run to e ends (cut) and
// where the next begins (next), preferring paragraph, line, then word
// boundaries.
func cutPoint(runes []rune, start, e int) (cut, next int) {
	if e >= len(runes) {
		return e, e
	}
	for p := e; p > start; p-- { // a blank line at p
		if runes[p] == '\n' && blankLineAfter(runes, p) {
			q := p
			for q < len(runes) && unicode.IsSpace(runes[q]) {
				q++
			}
			return p, q
		}
	}
	for p := e; p > start; p-- {
		if runes[p] == '\n' {
			return p, p + 1
		}
	}
	for p := e; p > start; p-- {
		if unicode.IsSpace(runes[p]) {
			q := p
			for q < len(runes) && unicode.IsSpace(runes[q]) && runes[q] != '\n' {
				q++
			}
			return p, q
		}
	}
	return e, e
}

func blankLineAfter(runes []rune, p int) bool {
	for q := p + 1; q < len(runes); q++ {
		if runes[q] == '\n' {
			return true
		}
		if !unicode.IsSpace(runes[q]) {
			return false
		}
	}
	return true
}
