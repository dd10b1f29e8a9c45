package telegram

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// inode is a piece of a line being rendered: text still to be escaped,
// finished HTML, or a run of emphasis delimiters (*, _ or ~).
type inode struct {
	kind        int
	s           string
	ch          byte
	n, orig     int
	open, close bool
}

const (
	nText = iota
	nHTML
	nDelim
)

// inline renders one line of Markdown text to Telegram HTML. In a link's
// text (inLink) links are not made and code spans are plain text, since
// Telegram does not nest those entities.
func inline(s string, inLink bool) string {
	nodes := scanInline(s, inLink)
	nodes = matchEmphasis(nodes)
	var b strings.Builder
	for _, n := range nodes {
		switch n.kind {
		case nText:
			b.WriteString(escape(n.s))
		case nHTML:
			b.WriteString(n.s)
		case nDelim:
			b.WriteString(strings.Repeat(string(n.ch), n.n))
		}
	}
	return b.String()
}

// plainInline renders a line of Markdown as plain text: markers dropped,
// links as their text.
func plainInline(s string) string {
	text, _, err := parse(inline(s, true))
	if err != nil {
		return s
	}
	return text
}

func scanInline(s string, inLink bool) []inode {
	var nodes []inode
	var text strings.Builder
	flushText := func() {
		if text.Len() > 0 {
			nodes = append(nodes, inode{kind: nText, s: text.String()})
			text.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && isASCIIPunct(s[i+1]):
			text.WriteByte(s[i+1])
			i += 2
			continue
		case c == '`':
			n := runLen(s, i, '`')
			if end := findCodeEnd(s, i+n, n); end >= 0 {
				code := s[i+n : end]
				if len(code) >= 2 && code[0] == ' ' && code[len(code)-1] == ' ' && strings.Trim(code, " ") != "" {
					code = code[1 : len(code)-1]
				}
				flushText()
				if inLink {
					nodes = append(nodes, inode{kind: nText, s: code})
				} else {
					nodes = append(nodes, inode{kind: nHTML, s: "<code>" + escape(code) + "</code>"})
				}
				i = end + n
				continue
			}
			text.WriteString(s[i : i+n])
			i += n
			continue
		case c == '<' && !inLink:
			if end := strings.IndexByte(s[i:], '>'); end > 0 {
				u := s[i+1 : i+end]
				if linkable(u) && !strings.ContainsAny(u, " \t<") {
					flushText()
					nodes = append(nodes, inode{kind: nHTML, s: `<a href="` + escapeAttr(u) + `">` + escape(u) + "</a>"})
					i += end + 1
					continue
				}
			}
		case (c == '[' || (c == '!' && i+1 < len(s) && s[i+1] == '[')) && !inLink:
			img := c == '!'
			start := i
			if img {
				start++
			}
			if label, url, end, ok := parseLink(s, start); ok {
				flushText()
				nodes = append(nodes, inode{kind: nHTML, s: link(label, url, img)})
				i = end
				continue
			}
		case c == '*' || c == '_' || c == '~':
			n := runLen(s, i, c)
			before, _ := utf8.DecodeLastRuneInString(s[:i])
			if i == 0 {
				before = ' '
			}
			after, _ := utf8.DecodeRuneInString(s[i+n:])
			if i+n >= len(s) {
				after = ' '
			}
			left := !unicode.IsSpace(after) && (!isPunct(after) || unicode.IsSpace(before) || isPunct(before))
			right := !unicode.IsSpace(before) && (!isPunct(before) || unicode.IsSpace(after) || isPunct(after))
			d := inode{kind: nDelim, ch: c, n: n, orig: n, open: left, close: right}
			if c == '_' {
				d.open = left && (!right || isPunct(before))
				d.close = right && (!left || isPunct(after))
			}
			if c == '~' && n != 2 {
				d.open, d.close = false, false
			}
			flushText()
			nodes = append(nodes, d)
			i += n
			continue
		}
		text.WriteByte(c)
		i++
	}
	flushText()
	return nodes
}

// matchEmphasis pairs delimiter runs as CommonMark does: each closer with
// the nearest compatible opener before it, ** as bold and * as italic, ~~
// as strikethrough. Tags are inserted right after the opener and right
// before the closer, so pairs nest properly.
func matchEmphasis(nodes []inode) []inode {
	// bottom[k] is the index below which no opener for closers of kind k
	// can be found any more (CommonMark's openers_bottom), which keeps
	// this linear on text full of unmatched closers.
	type kind struct {
		ch   byte
		mod3 int
		open bool
	}
	bottom := map[kind]int{}
	for c := 0; c < len(nodes); c++ {
		if nodes[c].kind != nDelim || !nodes[c].close {
			continue
		}
		for nodes[c].n > 0 {
			k := kind{nodes[c].ch, nodes[c].orig % 3, nodes[c].open}
			o := -1
			for j := c - 1; j >= bottom[k]; j-- {
				op := nodes[j]
				if op.kind != nDelim || !op.open || op.n == 0 || op.ch != nodes[c].ch {
					continue
				}
				cl := nodes[c]
				if cl.ch == '~' {
					if op.n < 2 || cl.n < 2 {
						continue
					}
				} else if (op.close || cl.open) && (op.orig+cl.orig)%3 == 0 && (op.orig%3 != 0 || cl.orig%3 != 0) {
					continue
				}
				o = j
				break
			}
			if o < 0 {
				bottom[k] = c
				break
			}
			use, tag := 1, "i"
			if nodes[o].n >= 2 && nodes[c].n >= 2 {
				use, tag = 2, "b"
			}
			if nodes[c].ch == '~' {
				use, tag = 2, "s"
			}
			for j := o + 1; j < c; j++ {
				if nodes[j].kind == nDelim {
					nodes[j].open, nodes[j].close = false, false
				}
			}
			nodes[o].n -= use
			nodes[c].n -= use
			rest := append([]inode{{kind: nHTML, s: "</" + tag + ">"}}, nodes[c:]...)
			nodes = append(nodes[:c], rest...)
			rest = append([]inode{{kind: nHTML, s: "<" + tag + ">"}}, nodes[o+1:]...)
			nodes = append(nodes[:o+1], rest...)
			for k, b := range bottom { // two tags were inserted, at o+1 and at c
				if b > o {
					bottom[k] = b + 1
				}
				if b >= c {
					bottom[k]++
				}
			}
			c += 2
		}
	}
	return nodes
}

// Longest link text and URL looked for: bounds the work on text full of
// brackets that close nothing.
const (
	maxLinkText = 1000
	maxLinkURL  = 2000
)

// parseLink reads [label](url "title") at s[i] == '['; end is the index
// after it.
func parseLink(s string, i int) (label, url string, end int, ok bool) {
	depth := 0
	j := i
	lim := min(len(s), i+maxLinkText)
scan:
	for ; j < lim; j++ {
		switch s[j] {
		case '\\':
			j++
		case '[':
			depth++
		case ']':
			if depth--; depth == 0 {
				break scan
			}
		}
	}
	if j >= lim || j+1 >= len(s) || s[j+1] != '(' {
		return "", "", 0, false
	}
	label = s[i+1 : j]
	k := j + 2
	paren := 0
	klim := min(len(s), k+maxLinkURL)
	for ; k < klim; k++ {
		if s[k] == '(' {
			paren++
		} else if s[k] == ')' {
			if paren == 0 {
				break
			}
			paren--
		}
	}
	if k >= klim {
		return "", "", 0, false
	}
	dest := strings.TrimSpace(s[j+2 : k])
	if sp := strings.IndexAny(dest, " \t"); sp >= 0 { // drop a "title"
		dest = dest[:sp]
	}
	dest = strings.TrimSuffix(strings.TrimPrefix(dest, "<"), ">")
	return label, dest, k + 1, true
}

func link(label, url string, img bool) string {
	text := inline(label, true)
	if strings.TrimSpace(text) == "" {
		text = escape(url)
	}
	if linkable(url) {
		return `<a href="` + escapeAttr(url) + `">` + text + "</a>"
	}
	if url == "" || url == label || img {
		return text
	}
	return text + " (" + escape(url) + ")"
}

// linkable reports whether Telegram takes url as a link target.
func linkable(url string) bool {
	l := strings.ToLower(url)
	for _, p := range []string{"https://", "http://", "mailto:", "tg://"} {
		if strings.HasPrefix(l, p) && len(l) > len(p) {
			return true
		}
	}
	return false
}

func runLen(s string, i int, c byte) int {
	n := 0
	for i+n < len(s) && s[i+n] == c {
		n++
	}
	return n
}

// findCodeEnd finds a run of exactly n backticks from i.
func findCodeEnd(s string, i, n int) int {
	for i < len(s) {
		j := strings.IndexByte(s[i:], '`')
		if j < 0 {
			return -1
		}
		j += i
		if m := runLen(s, j, '`'); m == n {
			return j
		} else {
			i = j + m
		}
	}
	return -1
}

func isASCIIPunct(c byte) bool {
	return c < 0x80 && unicode.IsPunct(rune(c)) || strings.IndexByte("$+<=>^`|~", c) >= 0
}

func isPunct(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }
