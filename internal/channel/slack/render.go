// Package slack holds the pure rules of dispatch's Slack channel: how the
// agent's Markdown becomes Slack mrkdwn, how a long reply is split into
// messages, the plain text sent when formatting is not wanted, and the
// Block Kit messages of a permission request.
//
// What the rules rely on, from Slack's "Formatting text for app surfaces"
// documentation:
//   - mrkdwn marks *bold*, _italic_, ~strike~, `code` and ```preformatted```
//     text, > quotes at the start of a line, and links as <url|text>. There
//     is no heading, no nested list and no escape for the markers: a marker
//     counts only at a word boundary, so a zero-width space (U+200B) next
//     to a marker lets formatting start or end inside a word.
//   - &, < and > must be written &amp;, &lt; and &gt; in any text Slack
//     parses (the only three escapes), since < > delimit links and
//     mentions.
//   - A message's text is at most 40,000 characters (Slack truncates the
//     rest) and a section block's text at most 3,000.
//
// The Markdown is read by the Telegram channel's reader
// (telegram.HTML: CommonMark emphasis, GitHub tables and strikethrough), so
// both channels understand the agent alike; this package only writes the
// result in Slack's own syntax.
package slack

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
)

// MaxPartLen is the longest part the channel sends, in UTF-16 code units of
// mrkdwn source: a reply longer than this is split. Slack takes 40,000
// characters in a message's text, but only 3,000 in a section block; the
// channel keeps every part within 3,000 so any part can also go into a
// section block (a permission request, a plain-text fallback) and long
// replies stay readable in the client.
const MaxPartLen = 3000

// MaxTextLen is the longest message text Slack keeps (it truncates the
// rest).
const MaxTextLen = 40000

// MinLimit is the smallest limit Split accepts: a part of one character in
// a quoted code block must fit.
const MinLimit = 32

type style uint8

const (
	stBold style = 1 << iota
	stItalic
	stStrike
	stCode
	stPre
	stQuote
)

// seg is a run of text under the same formatting.
type seg struct {
	text []rune
	st   style
	href string
}

// Mrkdwn renders the agent's Markdown as Slack mrkdwn: headings as bold
// lines, **bold** *bold*, *italic* _italic_, ~~strike~~ ~strike~, `code`,
// fenced blocks as ```…``` (language dropped), [text](url) as <url|text>,
// list markers as •, > quotes as > lines, tables as a preformatted block of
// aligned columns. Everything else is text, with &, < and > escaped, so a
// raw <@U123> or <!channel> in the reply is shown, never acted on.
func Mrkdwn(markdown string) string {
	return render(parseHTML(telegram.HTML(markdown)), true)
}

// parseHTML reads the Telegram HTML telegram.HTML writes (b, i, s, u,
// code, pre, a href, blockquote, tg-spoiler; &lt; &gt; &amp; &quot;).
func parseHTML(h string) []seg {
	var segs []seg
	var stack []string // open tags
	var hrefs []string
	var cur []rune
	st := func() (style, string) {
		var s style
		for _, t := range stack {
			switch t {
			case "b", "strong":
				s |= stBold
			case "i", "em":
				s |= stItalic
			case "s", "strike", "del":
				s |= stStrike
			case "code":
				s |= stCode
			case "pre":
				s |= stPre
			case "blockquote":
				s |= stQuote
			}
		}
		if s&stPre != 0 {
			s &^= stCode | stBold | stItalic | stStrike
		}
		href := ""
		if len(hrefs) > 0 {
			href = hrefs[len(hrefs)-1]
		}
		return s, href
	}
	flush := func() {
		if len(cur) > 0 {
			s, href := st()
			segs = append(segs, seg{text: cur, st: s, href: href})
			cur = nil
		}
	}
	for i := 0; i < len(h); {
		switch h[i] {
		case '<':
			end := strings.IndexByte(h[i:], '>')
			if end < 0 {
				cur = append(cur, []rune(h[i:])...)
				i = len(h)
				continue
			}
			tag := h[i+1 : i+end]
			i += end + 1
			flush()
			if strings.HasPrefix(tag, "/") { // telegram.HTML nests its tags properly
				if len(stack) > 0 {
					if stack[len(stack)-1] == "a" && len(hrefs) > 0 {
						hrefs = hrefs[:len(hrefs)-1]
					}
					stack = stack[:len(stack)-1]
				}
				continue
			}
			name, attrs, _ := strings.Cut(tag, " ")
			stack = append(stack, name)
			if name == "a" {
				href := ""
				if _, v, ok := strings.Cut(attrs, `href="`); ok {
					href, _, _ = strings.Cut(v, `"`)
					href = unescapeHTML(href)
				}
				hrefs = append(hrefs, href)
			}
		case '&':
			r, n := entity(h[i:])
			cur = append(cur, r)
			i += n
		default:
			r, n := utf8.DecodeRuneInString(h[i:])
			cur = append(cur, r)
			i += n
		}
	}
	flush()
	return segs
}

func entity(s string) (rune, int) {
	for _, e := range []struct {
		name string
		r    rune
	}{{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}} {
		if strings.HasPrefix(s, e.name) {
			return e.r, len(e.name)
		}
	}
	return '&', 1
}

func unescapeHTML(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '&' {
			r, n := entity(s[i:])
			b.WriteRune(r)
			i += n
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Escape writes text so Slack shows it as it is: &, < and > as entities.
func Escape(text string) string { return escaper.Replace(text) }

const zwsp = '\u200b'

// writer assembles mrkdwn, adding a zero-width space where a marker would
// otherwise touch a word and not count.
type writer struct {
	b         strings.Builder
	last      rune // last rune written; 0 at the start
	afterMark bool // the last thing written was a closing marker
	opened    bool // the last thing written was an opening marker
}

func (w *writer) raw(s string) {
	if s == "" {
		return
	}
	first, _ := utf8.DecodeRuneInString(s)
	if w.afterMark && (isWordRune(first) || isMarker(first)) {
		w.b.WriteRune(zwsp)
	}
	w.afterMark, w.opened = false, false
	w.b.WriteString(s)
	w.last, _ = utf8.DecodeLastRuneInString(s)
}

func (w *writer) open(m string) {
	if w.last != 0 && !w.opened && !unicode.IsSpace(w.last) && !strings.ContainsRune("([{\"'", w.last) {
		w.b.WriteRune(zwsp)
	}
	w.afterMark, w.opened = false, true
	w.b.WriteString(m)
	w.last = rune(m[len(m)-1])
}

func (w *writer) close(m string) {
	w.b.WriteString(m)
	w.last = rune(m[len(m)-1])
	w.afterMark, w.opened = true, false
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func isMarker(r rune) bool { return r == '*' || r == '_' || r == '~' || r == '`' }

// render writes segments as mrkdwn; links false writes links as their text.
func render(segs []seg, links bool) string {
	w := &writer{}
	renderTo(w, segs, links)
	return w.b.String()
}

func renderTo(w *writer, segs []seg, links bool) {
	for i := 0; i < len(segs); {
		s := segs[i]
		j := i + 1
		switch {
		case s.st&stQuote != 0:
			for j < len(segs) && segs[j].st&stQuote != 0 {
				j++
			}
			inner := make([]seg, j-i)
			for k := range inner {
				inner[k] = segs[i+k]
				inner[k].st &^= stQuote
			}
			body := strings.Trim(render(inner, links), "\n")
			lines := strings.Split(body, "\n")
			for k, l := range lines {
				if l == "" {
					lines[k] = ">"
				} else {
					lines[k] = "> " + l
				}
			}
			if w.last != 0 && w.last != '\n' {
				w.raw("\n")
			}
			w.raw(strings.Join(lines, "\n"))
		case s.st&stPre != 0:
			var body []rune
			body = append(body, s.text...)
			for j < len(segs) && segs[j].st&stPre != 0 && segs[j].st&stQuote == 0 {
				body = append(body, segs[j].text...)
				j++
			}
			code := strings.ReplaceAll(Escape(string(body)), "```", "`\u200b``")
			w.raw("```\n" + code + "\n```")
		case s.href != "" && links:
			text := []rune{}
			common := s.st
			for k := i; k < len(segs) && segs[k].href == s.href && segs[k].st&(stPre|stQuote) == 0; k++ {
				text = append(text, segs[k].text...)
				common &= segs[k].st
				j = k + 1
			}
			t := strings.Join(strings.Fields(string(text)), " ")
			l := "<" + linkURL(s.href)
			if t != "" && t != s.href {
				l += "|" + Escape(t)
			}
			l += ">"
			inlineRun(w, l, common&^stCode, true)
		default:
			for _, line := range splitLines(string(s.text)) {
				if line == "\n" {
					w.raw("\n")
					continue
				}
				inlineRun(w, line, s.st, false)
			}
		}
		i = j
	}
}

// splitLines cuts s into lines and the "\n" between them.
func splitLines(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			if s != "" {
				out = append(out, s)
			}
			return out
		}
		if i > 0 {
			out = append(out, s[:i])
		}
		out = append(out, "\n")
		s = s[i+1:]
	}
}

// linkURL writes a URL for <url|text>: entities escaped, and '|' (which
// would end the URL) percent-encoded.
func linkURL(u string) string {
	return strings.ReplaceAll(Escape(u), "|", "%7C")
}

var markers = []struct {
	st style
	m  string
}{{stBold, "*"}, {stItalic, "_"}, {stStrike, "~"}, {stCode, "`"}}

// inlineRun writes one line's run of text under st: its leading and
// trailing whitespace outside the markers, so every marker touches text.
// prepared is true for text already in mrkdwn (a link).
func inlineRun(w *writer, text string, st style, prepared bool) {
	core := strings.TrimSpace(text)
	lead := text[:strings.Index(text, core)]
	trail := text[len(lead)+len(core):]
	if core == "" {
		w.raw(text)
		return
	}
	if !prepared {
		if st&stCode != 0 {
			core = Escape(strings.ReplaceAll(core, "`", "ˋ"))
		} else {
			core = defuse(Escape(core))
		}
	}
	w.raw(lead)
	var open []string
	for _, m := range markers {
		if st&m.st != 0 {
			w.open(m.m)
			open = append(open, m.m)
		}
	}
	if len(open) > 0 {
		w.raw2(core)
	} else {
		w.raw(core)
	}
	for k := len(open) - 1; k >= 0; k-- {
		w.close(open[k])
	}
	w.raw(trail)
}

// raw2 writes text right after an opening marker (no space inserted).
func (w *writer) raw2(s string) {
	w.afterMark, w.opened = false, false
	w.b.WriteString(s)
	w.last, _ = utf8.DecodeLastRuneInString(s)
}

// lookalike replaces a literal marker character that would pair up with
// another on the same line and turn the text between into formatting.
var lookalike = map[rune]rune{'*': '∗', '_': '＿', '~': '∼', '`': 'ˋ'}

// defuse keeps literal markers literal: a marker at a word boundary that a
// later one on the same line would close is written as a look-alike
// character (Slack has no escape for them).
func defuse(line string) string {
	if !strings.ContainsAny(line, "*_~`") {
		return line
	}
	r := []rune(line)
	for i := 0; i+2 < len(r); i++ { // ``` anywhere could start a code block
		if r[i] == '`' && r[i+1] == '`' && r[i+2] == '`' {
			for ; i < len(r) && r[i] == '`'; i++ {
				r[i] = lookalike['`']
			}
		}
	}
	boundary := func(i int) bool { return i < 0 || i >= len(r) || !isWordRune(r[i]) }
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !isMarker(c) || !boundary(i-1) || i+1 >= len(r) || unicode.IsSpace(r[i+1]) || isMarker(r[i+1]) {
			continue
		}
		for k := i + 2; k < len(r); k++ {
			if r[k] == c && !unicode.IsSpace(r[k-1]) && boundary(k+1) {
				r[i] = lookalike[c]
				break
			}
		}
	}
	return string(r)
}
