// Package telegram holds the pure rules of dispatch's Telegram channel:
// how the agent's Markdown becomes the HTML Telegram accepts, how a long
// reply is split into messages, and the plain text sent when Telegram
// refuses the formatting.
//
// What the rules rely on, from the Bot API's "Formatting options" and
// sendMessage documentation:
//   - parse_mode HTML supports only b/strong, i/em, u/ins, s/strike/del,
//     tg-spoiler, a href, code, pre (with <pre><code class="language-x">
//     for a language) and blockquote; every other tag is refused with 400
//     "can't parse entities". '<', '>' and '&' that are not markup must be
//     written &lt; &gt; &amp;; the only named entities understood are those
//     and &quot;.
//   - A message text is 1-4096 characters after entity parsing, that is,
//     counting the text without tags and with entities decoded. Entity
//     offsets are measured in UTF-16 code units, so the rules count UTF-16
//     code units too: never fewer than characters, so a part within the
//     limit here is within Telegram's.
package telegram

import (
	"regexp"
	"strings"

	"github.com/mattn/go-runewidth"
)

// MaxMessageLen is the longest message text Telegram accepts, in UTF-16 code
// units after entity parsing.
const MaxMessageLen = 4096

// HTML renders the agent's Markdown (CommonMark as Claude writes it, with
// GitHub's tables and strikethrough) as Telegram HTML:
//   - headings become bold lines; **bold**, *italic*/_italic_, ~~strike~~,
//     `code`, [links](https://…) and <https://…> map to their tags; links
//     that are not http(s), mailto or tg URLs are written as "text (url)";
//   - fenced code blocks become <pre>, with <code class="language-x"> when
//     the fence names a language; tables become a <pre> block of aligned
//     columns;
//   - list markers become "•" (ordered lists keep their numbers, task lists
//     get ☐/☑), indentation is kept; > quotes become <blockquote> (Telegram
//     cannot nest them, so inner quotes are flattened);
//   - everything else is text, escaped, so raw HTML in the reply is shown
//     as written. Blocks are separated by one blank line.
//
// The result always parses under Telegram's rules.
func HTML(markdown string) string {
	markdown = strings.ReplaceAll(strings.ReplaceAll(strings.ToValidUTF8(markdown, "\uFFFD"), "\r\n", "\n"), "\r", "\n")
	markdown = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' {
			return -1 // control characters Telegram would not show
		}
		return r
	}, markdown)
	lines := strings.Split(markdown, "\n")
	return strings.Join(renderBlocks(lines, 0), "\n\n")
}

var (
	fenceRE    = regexp.MustCompile("^([ \t]*)(`{3,}|~{3,})[ \t]*([^ \t`]*)[^`]*$")
	headingRE  = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	ruleRE     = regexp.MustCompile(`^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$`)
	quoteRE    = regexp.MustCompile(`^ {0,3}> ?(.*)$`)
	listRE     = regexp.MustCompile(`^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$`)
	taskRE     = regexp.MustCompile(`^\[([ xX])\][ \t]+`)
	tableSepRE = regexp.MustCompile(`^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$`)
	langRE     = regexp.MustCompile(`^[A-Za-z0-9_+#.-]{1,32}$`)
)

// renderBlocks renders lines as blocks; depth counts enclosing quotes.
func renderBlocks(lines []string, depth int) []string {
	var out []string
	var text []string // the lines of the paragraph or list being gathered
	flush := func() {
		if len(text) > 0 {
			out = append(out, strings.Join(text, "\n"))
			text = nil
		}
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case fenceRE.MatchString(line):
			flush()
			m := fenceRE.FindStringSubmatch(line)
			indent, fence, lang := len(m[1]), m[2], m[3]
			var body []string
			for i++; i < len(lines); i++ {
				t := strings.TrimSpace(lines[i])
				if strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]) == "" {
					break
				}
				body = append(body, trimIndent(lines[i], indent))
			}
			out = append(out, codeBlock(strings.Join(body, "\n"), lang))
		case headingRE.MatchString(line):
			flush()
			m := headingRE.FindStringSubmatch(line)
			if h := inline(m[2], false); h != "" {
				out = append(out, "<b>"+h+"</b>")
			}
		case ruleRE.MatchString(line):
			flush()
			out = append(out, "———")
		case quoteRE.MatchString(line):
			flush()
			var inner []string
			for ; i < len(lines) && quoteRE.MatchString(lines[i]); i++ {
				inner = append(inner, quoteRE.FindStringSubmatch(lines[i])[1])
			}
			i--
			body := strings.Join(renderBlocks(inner, depth+1), "\n\n")
			if body == "" {
				continue
			}
			if depth == 0 {
				body = "<blockquote>" + body + "</blockquote>"
			}
			out = append(out, body)
		case i+1 < len(lines) && strings.Contains(line, "|") && tableSepRE.MatchString(lines[i+1]) &&
			len(tableCells(line)) == len(tableCells(lines[i+1])):
			flush()
			rows := [][]string{tableCells(line)}
			for i += 2; i < len(lines) && strings.Contains(lines[i], "|") && strings.TrimSpace(lines[i]) != ""; i++ {
				rows = append(rows, tableCells(lines[i]))
			}
			i--
			out = append(out, table(rows))
		case listRE.MatchString(line):
			m := listRE.FindStringSubmatch(line)
			marker, rest := m[2], m[3]
			if marker == "-" || marker == "*" || marker == "+" {
				marker = "•"
			}
			if t := taskRE.FindStringSubmatch(rest); t != nil {
				marker, rest = "☐", rest[len(t[0]):]
				if t[1] != " " {
					marker = "☑"
				}
			}
			text = append(text, m[1]+marker+" "+inline(trimBreak(rest), false))
		default:
			text = append(text, inline(trimBreak(line), false))
		}
	}
	flush()
	return out
}

// trimBreak drops the trailing spaces or backslash of a hard line break:
// the line ends there anyway.
func trimBreak(s string) string {
	s = strings.TrimRight(s, " \t")
	if strings.HasSuffix(s, "\\") && !strings.HasSuffix(s, "\\\\") {
		s = strings.TrimSuffix(s, "\\")
	}
	return s
}

// trimIndent removes up to n leading spaces, the indentation of the fence.
func trimIndent(s string, n int) string {
	i := 0
	for i < n && i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return s[i:]
}

func codeBlock(body, lang string) string {
	if !langRE.MatchString(lang) {
		return "<pre>" + escape(body) + "</pre>"
	}
	return `<pre><code class="language-` + escapeAttr(lang) + `">` + escape(body) + "</code></pre>"
}

func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, "\\|") {
		line = line[:len(line)-1]
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	cells = append(cells, cur.String())
	for i, c := range cells {
		cells[i] = plainInline(strings.TrimSpace(c))
	}
	return cells
}

// table lays rows out in aligned columns inside <pre>.
func table(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for j, c := range r {
			if j >= len(widths) {
				widths = append(widths, 0)
			}
			widths[j] = max(widths[j], runewidth.StringWidth(c))
		}
	}
	var b strings.Builder
	for i, r := range rows {
		var line strings.Builder
		for j, c := range r {
			if j > 0 {
				line.WriteString(" │ ")
			}
			line.WriteString(c)
			if j < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[j]-runewidth.StringWidth(c)))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
		if i == 0 && len(rows) > 1 {
			var sep []string
			for _, w := range widths[:len(r)] {
				sep = append(sep, strings.Repeat("─", w))
			}
			b.WriteString(strings.Join(sep, "─┼─"))
			b.WriteByte('\n')
		}
	}
	return "<pre>" + escape(strings.TrimRight(b.String(), "\n")) + "</pre>"
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escape(s string) string { return htmlEscaper.Replace(s) }

var attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func escapeAttr(s string) string { return attrEscaper.Replace(s) }
