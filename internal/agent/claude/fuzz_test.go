package claude

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzStreamLine feeds arbitrary stdout lines through the stream-json
// parsing and classification: nothing may panic, and a line that parses as
// an error result always classifies as some error.
func FuzzStreamLine(f *testing.F) {
	for _, s := range []string{
		`{"type":"system","subtype":"init","session_id":"abc"}`,
		`{"type":"result","subtype":"success","is_error":false,"result":"hi","session_id":"abc"}`,
		`{"type":"result","is_error":true,"api_error_status":529,"result":"API Error: 529 overloaded"}`,
		`{"type":"result","is_error":true,"api_error_status":null,"result":"API Error: Unable to connect to API (ConnectionRefused)"}`,
		`{"type":"result","is_error":true,"terminal_reason":"prompt_too_long","api_error_status":400}`,
		`{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["No conversation found with session ID: x"]}`,
		`{"type":"result","is_error":true,"api_error_status":"401","errors":[1,{"a":2},null]}`,
		`{"type":"assistant","message":{"content":[{"type":"text","text":"x"}]}}`,
		`not json at all`, `{"type":123}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseResult(line)
		if err != nil {
			return
		}
		te := Classify(r)
		if r.IsError && te == nil {
			t.Fatalf("error result %+v classified as success", r)
		}
		if !r.IsError && te != nil {
			t.Fatalf("success result %+v classified as %v", r, te)
		}
		_ = r.message()
	})
}

// FuzzReadLine checks the line reader on arbitrary input and limits: every
// byte is accounted for, lines never exceed the limit.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("a\nbb\r\nccc"), 2)
	f.Add([]byte(strings.Repeat("x", 70000)+"\n"), 100)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<20 {
			max = 1 + (max&0xffff+0xffff)%0xffff
		}
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		lines := 0
		for {
			line, tooLong, err := readLine(r, max)
			if len(line) > max {
				t.Fatalf("line of %d bytes over max %d", len(line), max)
			}
			_ = tooLong
			if err != nil {
				break
			}
			lines++
			if lines > len(data)+1 {
				t.Fatal("more lines than bytes")
			}
		}
	})
}
