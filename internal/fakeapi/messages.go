package fakeapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// MessagesRequest is the part of a POST /v1/messages body the fake reads.
// Unknown fields are ignored; the raw body is kept in Recorded.Body.
type MessagesRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	Messages  []Message       `json:"messages"`
	System    Content         `json:"system,omitempty"`
	Stream    bool            `json:"stream,omitempty"`
	Tools     []Tool          `json:"tools,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}

// Message is one conversation turn.
type Message struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
}

// Tool names a tool offered by the client. The fake calls tools only when
// told to (ToolMarker, Server.QueueToolUse).
type Tool struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

// Block is one content block. Only the fields the fake needs are kept:
// text; tool_use (ID, Name, Input); tool_result (ToolUseID, Content,
// IsError).
type Block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

// Content is a list of content blocks. The API accepts either a plain
// string or an array of blocks; a string decodes as a single text block.
type Content []Block

// UnmarshalJSON accepts a JSON string or an array of blocks.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = Content{{Type: "text", Text: s}}
		return nil
	}
	var blocks []Block
	if err := json.Unmarshal(b, &blocks); err != nil {
		return err
	}
	*c = blocks
	return nil
}

// Text joins the text of all text blocks with newlines.
func (c Content) Text() string {
	var parts []string
	for _, b := range c {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// UserTurns counts the user-role messages. Tool results are user turns too,
// exactly as the API sees them.
func (r MessagesRequest) UserTurns() int {
	n := 0
	for _, m := range r.Messages {
		if m.Role == "user" {
			n++
		}
	}
	return n
}

// LastUserText returns the last non-empty text block of the last user
// message. Claude Code prepends <system-reminder> blocks to the prompt, so
// the last block is the one the user typed.
func (r MessagesRequest) LastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role != "user" {
			continue
		}
		c := r.Messages[i].Content
		for j := len(c) - 1; j >= 0; j-- {
			if c[j].Type == "text" && strings.TrimSpace(c[j].Text) != "" {
				return c[j].Text
			}
		}
		return ""
	}
	return ""
}

// DefaultReply is the reply used unless SetReply installs another. It names
// the number of user turns so tests can tell a resumed conversation (N > 1)
// from a fresh one.
func DefaultReply(r MessagesRequest) string {
	return fmt.Sprintf("fake reply #%d to: %s", r.UserTurns(), r.LastUserText())
}

// Wire shapes of the responses, following the public Messages API docs.

type usage struct {
	InputTokens              int    `json:"input_tokens"`
	CacheCreationInputTokens int    `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int    `json:"cache_read_input_tokens"`
	OutputTokens             int    `json:"output_tokens"`
	ServiceTier              string `json:"service_tier,omitempty"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// toolUseBlock is a tool_use content block of an answer.
type toolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type message struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []any   `json:"content"` // textBlock or toolUseBlock`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        usage   `json:"usage"`
}

type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

func newErrorBody(typ, msg, requestID string) errorBody {
	var e errorBody
	e.Type = "error"
	e.Error.Type = typ
	e.Error.Message = msg
	e.RequestID = requestID
	return e
}

// Stream event payloads. Field order follows the docs, "type" first.

type messageStart struct {
	Type    string  `json:"type"`
	Message message `json:"message"`
}

type blockStart struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	ContentBlock any    `json:"content_block"`
}

type blockDelta struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta any    `json:"delta"` // textDelta or jsonDelta
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type jsonDelta struct {
	Type        string `json:"type"`
	PartialJSON string `json:"partial_json"`
}

type blockStop struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

type messageDelta struct {
	Type  string `json:"type"`
	Delta struct {
		StopReason   *string `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	} `json:"delta"`
	Usage struct {
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

type messageStop struct {
	Type string `json:"type"`
}

// event is one server-sent event of a streamed reply.
type event struct {
	name string
	data any
}

// streamEvents returns the standard event sequence for msg: message_start;
// for each content block content_block_start, its deltas (text_delta for
// text, input_json_delta for a tool_use's input, which starts empty) and
// content_block_stop; message_delta, message_stop.
func streamEvents(msg message) []event {
	start := msg
	start.Content = []any{}
	start.StopReason = nil
	start.Usage.OutputTokens = 1
	evs := []event{{"message_start", messageStart{"message_start", start}}}
	for i, c := range msg.Content {
		switch b := c.(type) {
		case textBlock:
			evs = append(evs, event{"content_block_start", blockStart{"content_block_start", i, textBlock{Type: "text"}}})
			for _, chunk := range chunks(b.Text) {
				evs = append(evs, event{"content_block_delta", blockDelta{"content_block_delta", i, textDelta{"text_delta", chunk}}})
			}
		case toolUseBlock:
			empty := b
			empty.Input = json.RawMessage("{}")
			evs = append(evs, event{"content_block_start", blockStart{"content_block_start", i, empty}})
			in := string(b.Input)
			for _, chunk := range []string{in[:len(in)/2], in[len(in)/2:]} {
				evs = append(evs, event{"content_block_delta", blockDelta{"content_block_delta", i, jsonDelta{"input_json_delta", chunk}}})
			}
		}
		evs = append(evs, event{"content_block_stop", blockStop{"content_block_stop", i}})
	}
	md := messageDelta{Type: "message_delta"}
	md.Delta.StopReason = msg.StopReason
	md.Usage.OutputTokens = msg.Usage.OutputTokens
	return append(evs,
		event{"message_delta", md},
		event{"message_stop", messageStop{"message_stop"}},
	)
}

// chunks splits text into up to three pieces so streams carry several
// deltas, as real ones do. Short text yields a single delta.
func chunks(text string) []string {
	words := strings.SplitAfter(text, " ")
	if len(words) < 3 {
		return []string{text}
	}
	third := len(words) / 3
	return []string{
		strings.Join(words[:third], ""),
		strings.Join(words[third:2*third], ""),
		strings.Join(words[2*third:], ""),
	}
}
