// Package permission holds the rules of asking a person whether an agent
// may run a tool: the short human summary of a tool call, the decisions a
// person (or the clock) can make, when a request expires, which standing
// allow_always rules answer a request without asking, and the state change
// of closing a request. Everything here is pure; the storage a broker needs
// is the small Store interface, with an in-memory implementation (Memory).
package permission

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/termsafe"
)

// MaxSummary bounds a summary in runes, the ellipsis included.
const MaxSummary = 160

// Summary is a short, single-line, terminal-safe description of a tool
// call for a person deciding on it or watching a turn's progress: the
// command for Bash, the file path (and the size written) for Write and
// Edit, the pattern for Grep and Glob, the URL for WebFetch, the question
// for AskUserQuestion. Unknown tools show their compact input. It is never
// longer than MaxSummary runes and holds no control characters.
func Summary(tool string, input json.RawMessage) string {
	var in map[string]any
	_ = json.Unmarshal(input, &in) // not an object: in stays nil, fields read as ""
	str := func(k string) string {
		s, _ := in[k].(string)
		return s
	}
	var s string
	switch tool {
	case "Bash":
		s = str("command")
	case "Write":
		s = fmt.Sprintf("%s (%s)", str("file_path"), size(len(str("content"))))
	case "Edit":
		s = fmt.Sprintf("%s (-%s +%s)", str("file_path"), size(len(str("old_string"))), size(len(str("new_string"))))
	case "MultiEdit":
		edits, _ := in["edits"].([]any)
		s = fmt.Sprintf("%s (%d edits)", str("file_path"), len(edits))
	case "NotebookEdit":
		s = str("notebook_path")
	case "Read":
		s = str("file_path")
	case "Grep":
		s = str("pattern")
		if p := str("path"); p != "" {
			s += " in " + p
		}
	case "Glob":
		s = str("pattern")
		if p := str("path"); p != "" {
			s += " in " + p
		}
	case "WebFetch":
		s = str("url")
	case "WebSearch":
		s = str("query")
	case "Task", "Agent":
		s = str("description")
	case "AskUserQuestion":
		if qs, _ := in["questions"].([]any); len(qs) > 0 {
			if q, _ := qs[0].(map[string]any); q != nil {
				s, _ = q["question"].(string)
			}
		}
	}
	if strings.TrimSpace(s) == "" {
		s = compact(input)
	}
	return Clip(termsafe.Line(oneSpace(s)), MaxSummary)
}

// size is n bytes for people: 512 B, 1.5 KB, 2.0 MB.
func size(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// compact is the input as one line of JSON, or "" for none.
func compact(input json.RawMessage) string {
	var b strings.Builder
	if len(input) == 0 || string(input) == "null" || string(input) == "{}" {
		return ""
	}
	var v any
	if json.Unmarshal(input, &v) != nil {
		return string(input)
	}
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// oneSpace folds every run of whitespace (newlines included) into one
// space, so a multi-line command reads as one line.
func oneSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

// Clip cuts s to at most n runes (n ≥ 1), ending in "…" when cut. Cutting
// escaped text may split an escape such as \x1b; what is left is still
// plain, printable text.
func Clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, count := 0, 0
	for count < n-1 {
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
		count++
	}
	return s[:i] + "…"
}
