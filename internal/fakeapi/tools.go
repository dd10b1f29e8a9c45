package fakeapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// ToolMarker starts a line of a prompt that makes the fake answer with a
// tool_use block instead of text: "TOOL_USE <name> <JSON input>", for
// example
//
//	TOOL_USE Bash {"command":"touch x"}
//	TOOL_USE Write {"file_path":"/tmp/a.txt","content":"hi"}
//
// Every such line of the last user message's text becomes one tool_use
// block of the answer, in order (several make a parallel tool call). The
// request that carries the tool results back is answered with text naming
// each tool and its result (ToolResultReply), so a test sees whether the
// tool ran or was refused.
const ToolMarker = "TOOL_USE"

// ToolUse is one tool call the fake makes.
type ToolUse struct {
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// ToolResult is one tool_result block of a request, with the name of the
// tool_use it answers (from the assistant message before it).
type ToolResult struct {
	ToolUseID string
	Name      string
	IsError   bool
	Text      string
}

// output is what the fake answers one request with: text, or tool calls.
type output struct {
	text  string
	tools []ToolUse
}

// parseMarkers returns the tool calls named by ToolMarker lines of text.
func parseMarkers(text string) ([]ToolUse, error) {
	var out []ToolUse
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, maxBody)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, ToolMarker+" ")
		if !ok {
			continue
		}
		name, input, _ := strings.Cut(strings.TrimSpace(rest), " ")
		input = strings.TrimSpace(input)
		if input == "" {
			input = "{}"
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(input), &obj); err != nil || name == "" {
			return nil, fmt.Errorf("fakeapi: bad %s line %q: want %s NAME {JSON object}", ToolMarker, line, ToolMarker)
		}
		out = append(out, ToolUse{Name: name, Input: json.RawMessage(input)})
	}
	return out, nil
}

// ToolResults returns the tool_result blocks of the last user message, each
// with the name of the tool_use it answers; nil when that message carries
// none (an ordinary prompt).
func (r MessagesRequest) ToolResults() []ToolResult {
	last := -1
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			last = i
			break
		}
	}
	if last < 0 {
		return nil
	}
	names := map[string]string{}
	for _, m := range r.Messages[:last] {
		for _, b := range m.Content {
			if b.Type == "tool_use" {
				names[b.ID] = b.Name
			}
		}
	}
	var out []ToolResult
	for _, b := range r.Messages[last].Content {
		if b.Type != "tool_result" {
			continue
		}
		out = append(out, ToolResult{ToolUseID: b.ToolUseID, Name: names[b.ToolUseID], IsError: b.IsError, Text: resultText(b.Content)})
	}
	return out
}

// resultText is the text of a tool_result's content: a string, or an array
// of blocks whose text blocks are joined.
func resultText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var c Content
	if err := json.Unmarshal(raw, &c); err != nil {
		return string(raw)
	}
	return c.Text()
}

// ToolResultReply is the fake's answer to a request carrying tool results:
// "fake reply after tools: Bash ok: <text>; Write error: <text>".
func ToolResultReply(results []ToolResult) string {
	parts := make([]string, len(results))
	for i, r := range results {
		status := "ok"
		if r.IsError {
			status = "error"
		}
		name := r.Name
		if name == "" {
			name = r.ToolUseID
		}
		parts[i] = fmt.Sprintf("%s %s: %s", name, status, r.Text)
	}
	return "fake reply after tools: " + strings.Join(parts, "; ")
}

// QueueToolUse makes the next answer that is not to a tool result call
// the tools given (one tool_use block each), whatever the prompt says.
// Calls queue up: each one serves one answer.
func (s *Server) QueueToolUse(tools ...ToolUse) {
	tools = append([]ToolUse(nil), tools...)
	for i := range tools {
		if len(tools[i].Input) == 0 {
			tools[i].Input = json.RawMessage("{}")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.toolQueue = append(s.toolQueue, tools)
}

// decide is the answer to req: the tool results' reply if it carries any,
// else queued tool calls, else those its prompt's ToolMarker lines name,
// else reply's text.
func (s *Server) decide(req MessagesRequest, reply func(MessagesRequest) string) (output, error) {
	if res := req.ToolResults(); len(res) > 0 {
		return output{text: ToolResultReply(res)}, nil
	}
	s.mu.Lock()
	var queued []ToolUse
	if len(s.toolQueue) > 0 {
		queued = s.toolQueue[0]
		s.toolQueue = s.toolQueue[1:]
	}
	s.mu.Unlock()
	if len(queued) > 0 {
		return output{tools: queued}, nil
	}
	tools, err := parseMarkers(req.LastUserText())
	if err != nil {
		return output{}, err
	}
	if len(tools) > 0 {
		return output{tools: tools}, nil
	}
	return output{text: reply(req)}, nil
}
