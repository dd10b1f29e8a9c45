package claude

import (
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/agent"
)

func TestClassify(t *testing.T) {
	const noKind = agent.Kind(-1) // success
	tests := []struct {
		name string
		r    ResultLine
		want agent.Kind
	}{
		{"success", ResultLine{Subtype: "success", Result: "hi"}, noKind},
		{"success mentioning errors", ResultLine{Result: "Prompt is too long; Unable to connect to API"}, noKind},
		{"unreachable", ResultLine{IsError: true, Result: "API Error: Unable to connect to API (ConnectionRefused)"}, agent.Outage},
		{"connection error", ResultLine{IsError: true, Result: "API Error: Connection error."}, agent.Outage},
		{"econnrefused", ResultLine{IsError: true, Result: "connect ECONNREFUSED 127.0.0.1:1"}, agent.Outage},
		{"request timed out", ResultLine{IsError: true, Result: "API Error: Request timed out."}, agent.Outage},
		{"fetch failed", ResultLine{IsError: true, Result: "TypeError: fetch failed"}, agent.Outage},
		{"overloaded no status", ResultLine{IsError: true, Result: "Overloaded"}, agent.Outage},
		{"529", ResultLine{IsError: true, APIErrorStatus: 529, Result: `API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}, agent.Outage},
		{"500", ResultLine{IsError: true, APIErrorStatus: 500, Result: "API Error: 500 Internal server error"}, agent.Outage},
		{"503", ResultLine{IsError: true, APIErrorStatus: 503}, agent.Outage},
		{"429", ResultLine{IsError: true, APIErrorStatus: 429, Result: "API Error: 429 rate_limit_error"}, agent.Outage},
		{"408", ResultLine{IsError: true, APIErrorStatus: 408}, agent.Outage},
		{"too long by reason", ResultLine{IsError: true, APIErrorStatus: 400, TerminalReason: "prompt_too_long", Result: "x"}, agent.ContextTooLong},
		{"too long by text", ResultLine{IsError: true, APIErrorStatus: 400, Result: "API Error: 400 prompt is too long: 210000 tokens > 200000 maximum"}, agent.ContextTooLong},
		{"too long in errors", ResultLine{IsError: true, Errors: []string{"Prompt is too long"}}, agent.ContextTooLong},
		// "conversation not found" comes only from the driver's structured
		// judgement (a --resume start before its first turn), never from
		// words in an error text: a tool's error about a ticket, say.
		{"resume failed (driver)", ResultLine{IsError: true, Subtype: "error_during_execution", Errors: []string{"No conversation found with session ID: abc"}, ResumeFailed: true}, agent.ResumeFailed},
		{"no conversation words in errors", ResultLine{IsError: true, Subtype: "error_during_execution", Errors: []string{"No conversation found with session ID: abc"}}, agent.Fault},
		{"no conversation words in a tool error", ResultLine{IsError: true, Subtype: "success", Result: "Tool error: No conversation found for ticket #12"}, agent.Fault},
		{"401", ResultLine{IsError: true, APIErrorStatus: 401, Result: "API Error: 401 invalid x-api-key"}, agent.Auth},
		{"403", ResultLine{IsError: true, APIErrorStatus: 403}, agent.Auth},
		{"invalid key text", ResultLine{IsError: true, Result: "Invalid API key · Please run /login"}, agent.Auth},
		{"authentication text", ResultLine{IsError: true, Result: "authentication_error"}, agent.Auth},
		{"400 other", ResultLine{IsError: true, APIErrorStatus: 400, Result: "API Error: 400 invalid_request_error"}, agent.Fault},
		{"400 overloaded wording is not an outage", ResultLine{IsError: true, APIErrorStatus: 400, Result: "overloaded"}, agent.Fault},
		{"stub error", ResultLine{IsError: true, Subtype: "error_during_execution", Result: "stub error"}, agent.Fault},
		{"empty", ResultLine{IsError: true}, agent.Fault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.r)
			if tt.want == noKind {
				if got != nil {
					t.Fatalf("Classify = %v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatalf("Classify = nil, want %v", tt.want)
			}
			if got.Kind != tt.want {
				t.Errorf("Kind = %v, want %v (%v)", got.Kind, tt.want, got)
			}
			if got.Status != tt.r.APIErrorStatus {
				t.Errorf("Status = %d, want %d", got.Status, tt.r.APIErrorStatus)
			}
			if got.Msg == "" {
				t.Error("empty Msg")
			}
			if got.Kind == agent.Auth && !strings.Contains(got.Msg, "ANTHROPIC_API_KEY") {
				t.Errorf("auth error without hint: %q", got.Msg)
			}
		})
	}
}

func TestParseResult(t *testing.T) {
	tests := []struct {
		line string
		want ResultLine
	}{
		{`{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s"}`,
			ResultLine{Subtype: "success", Result: "ok", SessionID: "s"}},
		{`{"type":"result","is_error":true,"api_error_status":null,"result":"x"}`,
			ResultLine{IsError: true, Result: "x"}},
		{`{"type":"result","is_error":true,"api_error_status":529}`,
			ResultLine{IsError: true, APIErrorStatus: 529}},
		{`{"type":"result","is_error":true,"api_error_status":"429"}`,
			ResultLine{IsError: true, APIErrorStatus: 429}},
		{`{"type":"result","is_error":true,"terminal_reason":"prompt_too_long","errors":["a",{"m":1},null]}`,
			ResultLine{IsError: true, TerminalReason: "prompt_too_long", Errors: []string{"a", `{"m":1}`}}},
	}
	for _, tt := range tests {
		got, err := parseResult([]byte(tt.line))
		if err != nil {
			t.Fatalf("parseResult(%s): %v", tt.line, err)
		}
		if got.Subtype != tt.want.Subtype || got.IsError != tt.want.IsError || got.Result != tt.want.Result ||
			got.SessionID != tt.want.SessionID || got.APIErrorStatus != tt.want.APIErrorStatus ||
			got.TerminalReason != tt.want.TerminalReason || strings.Join(got.Errors, "|") != strings.Join(tt.want.Errors, "|") {
			t.Errorf("parseResult(%s) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}
