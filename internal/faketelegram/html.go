package faketelegram

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseHTML parses text in the Bot API's HTML parse mode the way Telegram's
// server does (its rules are those of TDLib's HTML parser), and returns the
// text after entity parsing and the entities found, with offsets and
// lengths in UTF-16 code units. An error is the description Telegram gives
// after "Bad Request: can't parse entities: ".
//
// What it relies on, from the Bot API's "Formatting options" and TDLib:
//   - Supported tags: b, strong, i, em, u, ins, s, strike, del, tg-spoiler,
//     span class="tg-spoiler", a href, code, pre, blockquote (with optional
//     expandable), tg-emoji emoji-id. Any other start tag is refused
//     ("Unsupported start tag"); tag names are not case-sensitive.
//   - Every start tag needs its end tag, in nesting order ("Unmatched end
//     tag", "Can't find end tag corresponding to start tag"); an end tag
//     with nothing open is refused ("Unexpected end tag").
//   - Only &lt; &gt; &amp; &quot; and numeric character references are
//     decoded; any other '&' stays as it is (the server tolerates it, though
//     the documentation asks for &amp;). A '>' outside a tag is plain text; a
//     '<' always starts a tag.
//   - <pre><code class="language-x"> gives a pre entity with language x;
//     the language cannot be given to a lone code tag.
//   - Empty entities are dropped; nesting the server would silently fix
//     (code inside a link, say) is not refused here either.
func ParseHTML(text string) (string, []MessageEntity, error) {
	if !utf8.ValidString(text) {
		return "", nil, fmt.Errorf("strings must be encoded in UTF-8")
	}
	at := func(i int) byte {
		if i < len(text) {
			return text[i]
		}
		return 0
	}
	type open struct {
		tag, arg    string
		utf16Offset int
		textBegin   int
	}
	var (
		out      strings.Builder
		u16      int
		stack    []open
		entities []MessageEntity
	)
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '&' {
			if r, next := decodeHTMLEntity(text, i); r != 0 {
				out.WriteRune(r)
				u16 += utf16Len(r)
				i = next - 1
				continue
			}
		}
		if c != '<' {
			out.WriteByte(c)
			if c < 0x80 || c >= 0xc0 { // first byte of a character
				u16++
				if c >= 0xf0 {
					u16++ // four bytes: a surrogate pair
				}
			}
			continue
		}
		begin := i
		i++
		if at(i) != '/' {
			for at(i) != 0 && !isSpace(at(i)) && at(i) != '>' {
				i++
			}
			if at(i) == 0 {
				return "", nil, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
			}
			tag := strings.ToLower(text[begin+1 : i])
			if !supportedTags[tag] {
				return "", nil, fmt.Errorf("Unsupported start tag \"%s\" at byte offset %d", tag, begin)
			}
			arg := ""
			for at(i) != '>' {
				for at(i) != 0 && isSpace(at(i)) {
					i++
				}
				if at(i) == '>' {
					break
				}
				if at(i) == 0 {
					return "", nil, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
				}
				nameBegin := i
				for at(i) != 0 && !isSpace(at(i)) && at(i) != '=' && at(i) != '>' {
					i++
				}
				name := strings.ToLower(text[nameBegin:i])
				if name == "" {
					return "", nil, fmt.Errorf("Empty attribute name in the tag \"%s\" at byte offset %d", tag, begin)
				}
				for at(i) != 0 && isSpace(at(i)) {
					i++
				}
				if at(i) != '=' {
					if tag == "blockquote" && name == "expandable" {
						arg = "expandable"
						continue
					}
					return "", nil, fmt.Errorf("Expected equal sign in declaration of an attribute of the tag \"%s\" at byte offset %d", tag, begin)
				}
				i++
				for at(i) != 0 && isSpace(at(i)) {
					i++
				}
				if at(i) == 0 {
					return "", nil, fmt.Errorf("Unclosed start tag \"%s\" at byte offset %d", tag, begin)
				}
				var value strings.Builder
				if q := at(i); q != '\'' && q != '"' {
					tokBegin := i
					for isAlnum(at(i)) || at(i) == '.' || at(i) == '-' {
						i++
					}
					value.WriteString(strings.ToLower(text[tokBegin:i]))
					if !isSpace(at(i)) && at(i) != '>' {
						return "", nil, fmt.Errorf("Unexpected end of name token at byte offset %d", tokBegin)
					}
				} else {
					i++
					for at(i) != q && at(i) != 0 {
						if at(i) == '&' {
							if r, next := decodeHTMLEntity(text, i); r != 0 {
								value.WriteRune(r)
								i = next
								continue
							}
						}
						value.WriteByte(at(i))
						i++
					}
					if at(i) == q {
						i++
					}
				}
				if at(i) == 0 {
					return "", nil, fmt.Errorf("Unclosed start tag at byte offset %d", begin)
				}
				v := value.String()
				switch {
				case tag == "a" && name == "href":
					arg = v
				case tag == "code" && name == "class" && strings.HasPrefix(v, "language-"):
					arg = v[len("language-"):]
				case tag == "span" && name == "class" && strings.HasPrefix(v, "tg-"):
					arg = v[len("tg-"):]
				case tag == "tg-emoji" && name == "emoji-id":
					arg = v
				}
			}
			if tag == "span" && arg != "spoiler" {
				return "", nil, fmt.Errorf("Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", begin)
			}
			stack = append(stack, open{tag: tag, arg: arg, utf16Offset: u16, textBegin: out.Len()})
			continue
		}
		// An end tag.
		if len(stack) == 0 {
			return "", nil, fmt.Errorf("Unexpected end tag at byte offset %d", begin)
		}
		for at(i) != 0 && !isSpace(at(i)) && at(i) != '>' {
			i++
		}
		endName := strings.ToLower(text[begin+2 : i])
		for at(i) != 0 && isSpace(at(i)) {
			i++
		}
		if at(i) != '>' {
			return "", nil, fmt.Errorf("Unclosed end tag at byte offset %d", begin)
		}
		top := stack[len(stack)-1]
		if endName != "" && endName != top.tag {
			return "", nil, fmt.Errorf("Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", begin, top.tag, endName)
		}
		stack = stack[:len(stack)-1]
		length := u16 - top.utf16Offset
		if length == 0 {
			continue
		}
		e := MessageEntity{Offset: top.utf16Offset, Length: length}
		switch top.tag {
		case "b", "strong":
			e.Type = "bold"
		case "i", "em":
			e.Type = "italic"
		case "u", "ins":
			e.Type = "underline"
		case "s", "strike", "del":
			e.Type = "strikethrough"
		case "tg-spoiler", "span":
			e.Type = "spoiler"
		case "tg-emoji":
			e.Type = "custom_emoji"
		case "a":
			e.Type, e.URL = "text_link", top.arg
			if e.URL == "" {
				e.URL = out.String()[top.textBegin:]
			}
		case "code":
			e.Type, e.Language = "code", top.arg
		case "pre":
			e.Type = "pre"
			if n := len(entities); n > 0 && entities[n-1].Type == "code" && entities[n-1].Offset == e.Offset && entities[n-1].Length == e.Length {
				e.Language = entities[n-1].Language
				entities = entities[:n-1]
			}
		case "blockquote":
			e.Type = "blockquote"
			if top.arg == "expandable" {
				e.Type = "expandable_blockquote"
			}
		}
		entities = append(entities, e)
	}
	if len(stack) > 0 {
		return "", nil, fmt.Errorf("Can't find end tag corresponding to start tag \"%s\"", stack[len(stack)-1].tag)
	}
	for i := range entities {
		if entities[i].Type == "code" {
			entities[i].Language = "" // a language survives only under pre
		}
	}
	sortEntities(entities)
	return out.String(), entities, nil
}

var supportedTags = map[string]bool{
	"a": true, "b": true, "strong": true, "i": true, "em": true, "s": true, "strike": true, "del": true,
	"u": true, "ins": true, "tg-spoiler": true, "tg-emoji": true, "span": true, "pre": true, "code": true,
	"blockquote": true,
}

// decodeHTMLEntity decodes the character reference at text[pos] (which is
// '&') and returns it and the position after it; r is 0 when it is not one
// the server knows. The final ';' is optional, as on the server.
func decodeHTMLEntity(text string, pos int) (r rune, next int) {
	at := func(i int) byte {
		if i < len(text) {
			return text[i]
		}
		return 0
	}
	end := pos + 1
	var res rune
	if at(pos+1) == '#' {
		end++
		if at(pos+2) == 'x' {
			end++
			for isHex(at(end)) {
				res = res*16 + rune(hexVal(at(end)))
				end++
				if res >= 0x10ffff {
					return 0, pos
				}
			}
		} else {
			for at(end) >= '0' && at(end) <= '9' {
				res = res*10 + rune(at(end)-'0')
				end++
				if res >= 0x10ffff {
					return 0, pos
				}
			}
		}
		if res == 0 || (res >= 0xd800 && res <= 0xdfff) {
			return 0, pos
		}
	} else {
		for isAlpha(at(end)) {
			end++
		}
		switch text[pos+1 : end] {
		case "lt":
			res = '<'
		case "gt":
			res = '>'
		case "amp":
			res = '&'
		case "quot":
			res = '"'
		default:
			return 0, pos
		}
	}
	if at(end) == ';' {
		end++
	}
	return res, end
}

// sortEntities orders entities by offset, outer (longer) first, as the
// server returns them.
func sortEntities(es []MessageEntity) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && entityLess(es[j], es[j-1]); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

func entityLess(a, b MessageEntity) bool {
	if a.Offset != b.Offset {
		return a.Offset < b.Offset
	}
	return a.Length > b.Length
}

// UTF16Len is the length of s in UTF-16 code units, the unit Telegram
// counts message lengths and entity offsets in.
func UTF16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16Len(r)
	}
	return n
}

func utf16Len(r rune) int {
	return utf16.RuneLen(r)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isAlnum(c byte) bool { return isAlpha(c) || (c >= '0' && c <= '9') }
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}
