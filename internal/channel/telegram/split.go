package telegram

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// tag is one element of Telegram HTML: its name and its start tag as
// written, so a part can reopen it exactly.
type tag struct {
	name, open, href string
}

// segment is a run of text under the same open elements.
type segment struct {
	text  []rune
	stack []int // indices into the document's tags, outermost first
}

type doc struct {
	tags []tag
	segs []segment
}

var allowedTags = map[string]bool{
	"b": true, "strong": true, "i": true, "em": true, "u": true, "ins": true, "s": true, "strike": true,
	"del": true, "tg-spoiler": true, "span": true, "a": true, "code": true, "pre": true, "blockquote": true,
}

// parseDoc reads Telegram HTML: the tags above, well nested, attributes in
// double or single quotes, and the four named entities and numeric ones.
func parseDoc(html string) (*doc, error) {
	d := &doc{}
	var stack []int
	var text []rune
	flush := func() {
		if len(text) > 0 {
			d.segs = append(d.segs, segment{text: text, stack: append([]int(nil), stack...)})
			text = nil
		}
	}
	for i := 0; i < len(html); {
		c := html[i]
		switch c {
		case '&':
			r, n := decodeEntity(html[i:])
			if n == 0 {
				return nil, fmt.Errorf("telegram: stray '&' at byte %d", i)
			}
			text = append(text, r)
			i += n
		case '<':
			end := strings.IndexByte(html[i:], '>')
			if end < 0 {
				return nil, fmt.Errorf("telegram: unclosed tag at byte %d", i)
			}
			raw := html[i : i+end+1]
			inner := raw[1 : len(raw)-1]
			if strings.HasPrefix(inner, "/") {
				name := strings.ToLower(strings.TrimSpace(inner[1:]))
				if len(stack) == 0 || d.tags[stack[len(stack)-1]].name != name {
					return nil, fmt.Errorf("telegram: unexpected end tag %s at byte %d", raw, i)
				}
				flush()
				stack = stack[:len(stack)-1]
			} else {
				name, attrs, _ := strings.Cut(inner, " ")
				name = strings.ToLower(name)
				if !allowedTags[name] {
					return nil, fmt.Errorf("telegram: unsupported tag %s at byte %d", raw, i)
				}
				t := tag{name: name, open: raw}
				if name == "a" {
					t.href = attrValue(attrs, "href")
				}
				flush()
				d.tags = append(d.tags, t)
				stack = append(stack, len(d.tags)-1)
			}
			i += end + 1
		default:
			r, n := utf8.DecodeRuneInString(html[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, fmt.Errorf("telegram: invalid UTF-8 at byte %d", i)
			}
			text = append(text, r)
			i += n
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("telegram: %s is not closed", d.tags[stack[len(stack)-1]].open)
	}
	flush()
	return d, nil
}

func decodeEntity(s string) (rune, int) {
	for _, e := range []struct {
		name string
		r    rune
	}{{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}} {
		if strings.HasPrefix(s, e.name) {
			return e.r, len(e.name)
		}
	}
	if strings.HasPrefix(s, "&#") {
		end := strings.IndexByte(s, ';')
		if end > 2 {
			var r rune
			num := s[2:end]
			base := 10
			if num[0] == 'x' || num[0] == 'X' {
				num, base = num[1:], 16
			}
			if _, err := fmt.Sscanf(num, map[int]string{10: "%d", 16: "%x"}[base], &r); err == nil && r > 0 && utf8.ValidRune(r) {
				return r, end + 1
			}
		}
	}
	return 0, 0
}

// attrValue returns a quoted attribute's value, entities decoded.
func attrValue(attrs, name string) string {
	i := strings.Index(attrs, name+"=")
	if i < 0 || i+len(name)+1 >= len(attrs) {
		return ""
	}
	v := attrs[i+len(name)+1:]
	q := v[0]
	if q != '"' && q != '\'' {
		return ""
	}
	end := strings.IndexByte(v[1:], q)
	if end < 0 {
		return ""
	}
	var b strings.Builder
	raw := v[1 : 1+end]
	for j := 0; j < len(raw); {
		if r, n := decodeEntity(raw[j:]); n > 0 {
			b.WriteRune(r)
			j += n
			continue
		}
		b.WriteByte(raw[j])
		j++
	}
	return b.String()
}

// Split cuts Telegram HTML into parts whose text after entity parsing is at
// most limit UTF-16 code units each (MaxMessageLen for Telegram). It cuts
// at the last paragraph break (a blank line) that fits, else the last line
// break, else the last space, and cuts a word only when it alone is longer
// than limit; the whitespace at a cut is dropped. Parts never end inside a
// tag or an entity: elements open at a cut are closed at the end of one
// part and opened again, with the same attributes, at the start of the
// next, so each part is valid on its own (a code block split over two
// messages is two code blocks with the same language). Parts that would be
// only whitespace are left out. A text within the limit comes back as the
// one part it is; an error means html is not Telegram HTML.
func Split(html string, limit int) ([]string, error) {
	d, err := parseDoc(html)
	if err != nil {
		return nil, err
	}
	limit = max(limit, 2) // a surrogate pair must fit
	var runes []rune
	var owner []int // segment of each rune
	for si, s := range d.segs {
		runes = append(runes, s.text...)
		for range s.text {
			owner = append(owner, si)
		}
	}
	n := len(runes)
	width := make([]int, n+1) // width[i]: UTF-16 units of runes[:i]
	for i, r := range runes {
		width[i+1] = width[i] + utf16.RuneLen(r)
	}
	var parts []string
	for start := 0; start < n; {
		if width[n]-width[start] <= limit {
			parts = appendPart(parts, d, runes, owner, start, n)
			break
		}
		e := start // the furthest end that fits
		for e < n && width[e+1]-width[start] <= limit {
			e++
		}
		cut, next := cutPoint(runes, start, e)
		for cut > start && unicode.IsSpace(runes[cut-1]) && cut < next { // no trailing whitespace at a boundary
			cut--
		}
		parts = appendPart(parts, d, runes, owner, start, cut)
		start = next
	}
	return parts, nil
}

// cutPoint chooses where a part from start that may run to e ends (cut) and
// where the next begins (next), preferring paragraph, line, then word
// boundaries.
func cutPoint(runes []rune, start, e int) (cut, next int) {
	for p := e; p > start; p-- { // a blank line at p
		if runes[p] == '\n' && p+1 < len(runes) && isBlankLineAfter(runes, p) {
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
	if e == start {
		e++
	}
	return e, e
}

// isBlankLineAfter reports whether the line after the newline at p is
// blank, so p starts a paragraph break.
func isBlankLineAfter(runes []rune, p int) bool {
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

// appendPart renders runes[a:b] with their elements and appends it unless
// it is only whitespace.
func appendPart(parts []string, d *doc, runes []rune, owner []int, a, b int) []string {
	if strings.TrimSpace(string(runes[a:b])) == "" {
		return parts
	}
	var sb strings.Builder
	var cur []int
	for i := a; i < b; {
		j := i
		for j < b && owner[j] == owner[i] {
			j++
		}
		stack := d.segs[owner[i]].stack
		common := 0
		for common < len(cur) && common < len(stack) && cur[common] == stack[common] {
			common++
		}
		for k := len(cur) - 1; k >= common; k-- {
			sb.WriteString("</" + d.tags[cur[k]].name + ">")
		}
		for _, t := range stack[common:] {
			sb.WriteString(d.tags[t].open)
		}
		sb.WriteString(escape(string(runes[i:j])))
		cur = stack
		i = j
	}
	for k := len(cur) - 1; k >= 0; k-- {
		sb.WriteString("</" + d.tags[cur[k]].name + ">")
	}
	return append(parts, sb.String())
}

// PlainText is the text of Telegram HTML as a plain message, for when
// Telegram refuses the formatting: tags dropped and entities decoded, with
// each link's URL after its text ("docs (https://…)") when that keeps the
// whole within limit UTF-16 code units (limit <= 0: no limit). An error
// means html is not Telegram HTML.
func PlainText(html string, limit int) (string, error) {
	d, err := parseDoc(html)
	if err != nil {
		return "", err
	}
	var plain, withURLs strings.Builder
	for i, s := range d.segs {
		t := string(s.text)
		plain.WriteString(t)
		withURLs.WriteString(t)
		// After the last segment inside a link, add its URL.
		for _, ti := range s.stack {
			tg := d.tags[ti]
			if tg.name != "a" || tg.href == "" {
				continue
			}
			if i+1 < len(d.segs) && containsTag(d.segs[i+1].stack, ti) {
				continue
			}
			if linkText := linkTextOf(d, ti); linkText != tg.href {
				withURLs.WriteString(" (" + tg.href + ")")
			}
		}
	}
	if limit <= 0 || utf16Len(withURLs.String()) <= limit {
		return withURLs.String(), nil
	}
	return plain.String(), nil
}

func containsTag(stack []int, t int) bool {
	for _, x := range stack {
		if x == t {
			return true
		}
	}
	return false
}

func linkTextOf(d *doc, t int) string {
	var b strings.Builder
	for _, s := range d.segs {
		if containsTag(s.stack, t) {
			b.WriteString(string(s.text))
		}
	}
	return b.String()
}

// parse returns the text of Telegram HTML after entity parsing.
func parse(html string) (string, *doc, error) {
	d, err := parseDoc(html)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for _, s := range d.segs {
		b.WriteString(string(s.text))
	}
	return b.String(), d, nil
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}
