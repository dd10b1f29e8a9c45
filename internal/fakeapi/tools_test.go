package fakeapi

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// toolConvo is a request whose last user message is text, for the marker.
func toolConvo(stream bool, text string) string {
	b, _ := json.Marshal(map[string]any{
		"model": "claude-test", "max_tokens": 100, "stream": stream,
		"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "<system-reminder>x</system-reminder>"},
			map[string]any{"type": "text", "text": text},
		}}},
	})
	return string(b)
}

// TestToolUseStream: a TOOL_USE line makes a streamed answer with one
// tool_use block per line: content_block_start with an empty input, the
// input as input_json_delta pieces that join to the marker's JSON, and
// stop_reason tool_use — the shape the CLI parses.
func TestToolUseStream(t *testing.T) {
	s, c := startServer(t)
	resp := post(t, c, s.URL()+"/v1/messages", toolConvo(true, "do it\nTOOL_USE Bash {\"command\":\"touch x\"}\nTOOL_USE Write {\"file_path\":\"/a\",\"content\":\"hi\"}"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	evs, err := readSSE(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	inputs := map[float64]string{}
	var blocks []map[string]any
	for _, e := range evs {
		names = append(names, e.name)
		switch e.name {
		case "content_block_start":
			cb := e.data["content_block"].(map[string]any)
			blocks = append(blocks, cb)
			if in, _ := json.Marshal(cb["input"]); string(in) != "{}" {
				t.Errorf("content_block_start input %s, want {}", in)
			}
		case "content_block_delta":
			d := e.data["delta"].(map[string]any)
			if d["type"] != "input_json_delta" {
				t.Errorf("delta type %v", d["type"])
			}
			inputs[e.data["index"].(float64)] += d["partial_json"].(string)
		case "message_delta":
			if sr := e.data["delta"].(map[string]any)["stop_reason"]; sr != "tool_use" {
				t.Errorf("stop_reason %v", sr)
			}
		}
	}
	want := "message_start content_block_start content_block_delta content_block_delta content_block_stop " +
		"content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("events:\n got %s\nwant %s", got, want)
	}
	if len(blocks) != 2 || blocks[0]["type"] != "tool_use" || blocks[0]["name"] != "Bash" || blocks[1]["name"] != "Write" ||
		!strings.HasPrefix(blocks[0]["id"].(string), "toolu_") || blocks[0]["id"] == blocks[1]["id"] {
		t.Errorf("blocks %v", blocks)
	}
	if inputs[0] != `{"command":"touch x"}` || inputs[1] != `{"file_path":"/a","content":"hi"}` {
		t.Errorf("inputs %v", inputs)
	}
}

// TestToolUseJSONAndResults: unstreamed, the answer holds the tool_use
// blocks; the request that carries the tool results back gets text naming
// each tool (by the id of its tool_use) with its outcome.
func TestToolUseJSONAndResults(t *testing.T) {
	s, c := startServer(t)
	resp := post(t, c, s.URL()+"/v1/messages", toolConvo(false, "TOOL_USE Bash {\"command\":\"touch x\"}"))
	var msg struct {
		StopReason string `json:"stop_reason"`
		Content    []Block
	}
	if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != "tool_use" || len(msg.Content) != 1 || msg.Content[0].Type != "tool_use" || msg.Content[0].Name != "Bash" ||
		string(msg.Content[0].Input) != `{"command":"touch x"}` {
		t.Fatalf("answer %+v", msg)
	}
	id := msg.Content[0].ID

	follow, _ := json.Marshal(map[string]any{
		"model": "m", "max_tokens": 10,
		"messages": []any{
			map[string]any{"role": "user", "content": "TOOL_USE Bash {\"command\":\"touch x\"}"},
			map[string]any{"role": "assistant", "content": msg.Content},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "tool_result", "tool_use_id": id, "content": "(Bash completed with no output)"},
				map[string]any{"type": "tool_result", "tool_use_id": "toolu_other", "is_error": true,
					"content": []any{map[string]any{"type": "text", "text": "the person said no"}}},
			}},
		},
	})
	resp = post(t, c, s.URL()+"/v1/messages", string(follow))
	var reply struct{ Content []Block }
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		t.Fatal(err)
	}
	want := "fake reply after tools: Bash ok: (Bash completed with no output); toolu_other error: the person said no"
	if len(reply.Content) != 1 || reply.Content[0].Text != want {
		t.Errorf("reply %+v, want %q", reply.Content, want)
	}
}

// TestToolUseQueuedAndBadMarker: a tool call queued through the control
// endpoint answers the next request whatever it says (once); a malformed
// marker is a 400 naming the syntax; so is a bad control call.
func TestToolUseQueuedAndBadMarker(t *testing.T) {
	s, c := startServer(t)
	s.EnableControl()
	r := post(t, c, s.URL()+"/_control/tool_use?name=Write&input="+url.QueryEscape(`{"file_path":"/q"}`), "")
	if r.StatusCode != 200 {
		t.Fatalf("control status %d", r.StatusCode)
	}
	var msg struct{ Content []Block }
	json.NewDecoder(post(t, c, s.URL()+"/v1/messages", toolConvo(false, "hello")).Body).Decode(&msg)
	if len(msg.Content) != 1 || msg.Content[0].Name != "Write" || string(msg.Content[0].Input) != `{"file_path":"/q"}` {
		t.Errorf("queued answer %+v", msg.Content)
	}
	json.NewDecoder(post(t, c, s.URL()+"/v1/messages", toolConvo(false, "hello")).Body).Decode(&msg)
	if len(msg.Content) != 1 || msg.Content[0].Type != "text" {
		t.Errorf("second answer %+v, want text", msg.Content)
	}
	if r := post(t, c, s.URL()+"/v1/messages", toolConvo(false, "TOOL_USE Bash {not json")); r.StatusCode != 400 {
		t.Errorf("bad marker: status %d", r.StatusCode)
	}
	if r := post(t, c, s.URL()+"/_control/tool_use?input=%7B%7D", ""); r.StatusCode != 400 {
		t.Errorf("control without name: status %d", r.StatusCode)
	}
}
