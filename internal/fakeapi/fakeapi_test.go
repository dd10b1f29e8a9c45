package fakeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer starts a fake on a free loopback port and returns it with a
// client whose idle connections are closed at cleanup (for goleak).
func startServer(t *testing.T) (*Server, *http.Client) {
	t.Helper()
	s := New()
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return s, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

const convo = `{"model":"claude-test","max_tokens":100,%s"system":[{"type":"text","text":"be brief"}],
 "messages":[
  {"role":"user","content":"first question"},
  {"role":"assistant","content":[{"type":"text","text":"first answer"}]},
  {"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"text","text":"second question"}]}
 ],
 "tools":[{"name":"Bash","input_schema":{"type":"object"}}]}`

func body(stream bool) string {
	if stream {
		return fmt.Sprintf(convo, `"stream":true,`)
	}
	return fmt.Sprintf(convo, "")
}

func post(t *testing.T, c *http.Client, url, b string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", "secret")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type sseEvent struct {
	name string
	data map[string]any
}

// readSSE parses an event stream, failing on malformed lines, a data line
// that is not JSON, or an event name that differs from the data's "type".
func readSSE(t *testing.T, r io.Reader) ([]sseEvent, error) {
	t.Helper()
	var evs []sseEvent
	var name string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			name = ""
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var data map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatalf("data line is not JSON: %q: %v", line, err)
			}
			if name == "" || data["type"] != name {
				t.Fatalf("event %q carries data of type %v", name, data["type"])
			}
			evs = append(evs, sseEvent{name, data})
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return evs, sc.Err()
}

func TestStream(t *testing.T) {
	s, c := startServer(t)
	resp := post(t, c, s.URL()+"/v1/messages?beta=true", body(true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("request-id") == "" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	evs, err := readSSE(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var text strings.Builder
	for _, e := range evs {
		names = append(names, e.name)
		if e.name == "content_block_delta" {
			d := e.data["delta"].(map[string]any)
			if d["type"] != "text_delta" {
				t.Errorf("delta type %v", d["type"])
			}
			text.WriteString(d["text"].(string))
		}
	}
	got := strings.Join(names, " ")
	want := "message_start content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got != want {
		t.Fatalf("events:\n got %s\nwant %s", got, want)
	}
	if text.String() != "fake reply #2 to: second question" {
		t.Errorf("streamed text %q", text.String())
	}

	msg := evs[0].data["message"].(map[string]any)
	for k, v := range map[string]any{"type": "message", "role": "assistant", "model": "claude-test", "stop_reason": nil} {
		if msg[k] != v {
			t.Errorf("message_start message.%s = %#v, want %#v", k, msg[k], v)
		}
	}
	if content, ok := msg["content"].([]any); !ok || len(content) != 0 {
		t.Errorf("message_start content = %#v, want []", msg["content"])
	}
	if id, _ := msg["id"].(string); !strings.HasPrefix(id, "msg_") {
		t.Errorf("message id %q", id)
	}
	if u := msg["usage"].(map[string]any); u["input_tokens"].(float64) <= 0 {
		t.Errorf("usage %v", u)
	}
	if cb := evs[1].data["content_block"].(map[string]any); cb["type"] != "text" || cb["text"] != "" || evs[1].data["index"] != 0.0 {
		t.Errorf("content_block_start %v", evs[1].data)
	}
	md := evs[6].data
	if md["delta"].(map[string]any)["stop_reason"] != "end_turn" || md["usage"].(map[string]any)["output_tokens"].(float64) <= 0 {
		t.Errorf("message_delta %v", md)
	}
}

func TestJSONReply(t *testing.T) {
	s, c := startServer(t)
	resp := post(t, c, s.URL()+"/v1/messages", body(false))
	if resp.StatusCode != 200 || resp.Header.Get("request-id") == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	var msg struct {
		ID, Type, Role, Model string
		Content               []Block
		StopReason            string `json:"stop_reason"`
		Usage                 struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || msg.Role != "assistant" || msg.Model != "claude-test" || msg.StopReason != "end_turn" ||
		len(msg.Content) != 1 || msg.Content[0].Text != "fake reply #2 to: second question" || msg.Usage.OutputTokens == 0 {
		t.Errorf("message %+v", msg)
	}
}

func TestSetReply(t *testing.T) {
	s, c := startServer(t)
	s.SetReply(func(r MessagesRequest) string { return "custom for " + r.Model })
	resp := post(t, c, s.URL()+"/v1/messages", body(false))
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"text":"custom for claude-test"`) {
		t.Errorf("body %s", b)
	}
	s.SetReply(nil)
	resp = post(t, c, s.URL()+"/v1/messages", body(false))
	b, _ = io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "fake reply #2") {
		t.Errorf("body after SetReply(nil) %s", b)
	}
}

func TestParseRequest(t *testing.T) {
	var r MessagesRequest
	if err := json.Unmarshal([]byte(body(true)), &r); err != nil {
		t.Fatal(err)
	}
	if r.Model != "claude-test" || !r.Stream || r.MaxTokens != 100 || r.System.Text() != "be brief" ||
		len(r.Tools) != 1 || r.Tools[0].Name != "Bash" {
		t.Errorf("parsed %+v", r)
	}
	if r.UserTurns() != 2 || r.LastUserText() != "second question" || r.Messages[0].Content.Text() != "first question" {
		t.Errorf("turns %d, last %q", r.UserTurns(), r.LastUserText())
	}
	var c Content
	if err := json.Unmarshal([]byte(`{"type":"text"}`), &c); err == nil {
		t.Error("an object decoded as Content")
	}
}

func TestErrorModes(t *testing.T) {
	s, c := startServer(t)
	for _, tc := range []struct {
		mode    Mode
		status  int
		errType string
		message string
	}{
		{Mode500, 500, "api_error", "Internal server error"},
		{Mode529, 529, "overloaded_error", "Overloaded"},
		{Mode429, 429, "rate_limit_error", ""},
		{Mode401, 401, "authentication_error", "invalid x-api-key"},
		{ModeTooLong, 400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"},
		{"bogus", 500, "api_error", `fakeapi: unknown mode "bogus"`},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			s.SetMode(tc.mode)
			for _, stream := range []bool{false, true} {
				resp := post(t, c, s.URL()+"/v1/messages", body(stream))
				var e struct {
					Type  string
					Error struct{ Type, Message string }
				}
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status || e.Type != "error" || e.Error.Type != tc.errType ||
					(tc.message != "" && e.Error.Message != tc.message) || resp.Header.Get("request-id") == "" {
					t.Errorf("stream=%v: status %d body %+v headers %v", stream, resp.StatusCode, e, resp.Header)
				}
				if ra, ok := resp.Header["Retry-After"]; (tc.mode == Mode429) != ok || (ok && ra[0] != "0") {
					t.Errorf("retry-after %v", ra)
				}
			}
		})
	}
}

func TestBadJSON(t *testing.T) {
	s, c := startServer(t)
	resp := post(t, c, s.URL()+"/v1/messages", `{"model":`)
	if resp.StatusCode != 400 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Request != nil || r[0].Body != `{"model":` {
		t.Errorf("recorded %+v", r)
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func TestRefuseThenBackOnSamePort(t *testing.T) {
	s, c := startServer(t)
	url := s.URL()
	post(t, c, url+"/v1/messages", body(false)).Body.Close() // leaves a kept-alive connection

	s.SetMode(ModeRefuse)
	// The kept-alive connection was dropped: the client either notices and
	// dials anew (refused), or reuses it and reads EOF or a reset.
	if _, err := c.Post(url+"/v1/messages", "application/json", strings.NewReader(body(false))); err == nil {
		t.Fatal("request in refuse mode succeeded")
	}
	if _, err := c.Post(url+"/v1/messages", "application/json", strings.NewReader(body(false))); !isRefused(err) {
		t.Fatalf("in refuse mode: err = %v, want connection refused", err)
	}
	s.SetMode(ModeOK)
	if s.URL() != url || s.Err() != nil {
		t.Fatalf("URL %s -> %s, Err %v", url, s.URL(), s.Err())
	}
	if resp := post(t, c, url+"/v1/messages", body(false)); resp.StatusCode != 200 {
		t.Errorf("after refuse: status %d", resp.StatusCode)
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("recorded %d requests, want 2", n)
	}
}

func TestStartInRefuseMode(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetMode(ModeRefuse)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if _, err := c.Get(s.URL()); !isRefused(err) {
		t.Fatalf("err = %v, want connection refused", err)
	}
	s.SetMode(ModeOK)
	resp, err := c.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestStartErrors(t *testing.T) {
	s := New()
	defer s.Close()
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:80", "nonsense"} {
		if err := s.Start(addr); err == nil {
			t.Errorf("Start(%q) succeeded", addr)
		}
	}
	if err := s.Start("localhost:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("second Start succeeded")
	}
}

// waitRequests waits until n POST /v1/messages have been recorded.
func waitRequests(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(s.Requests()) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests arrived, want %d", len(s.Requests()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHangReleasedByClose(t *testing.T) {
	s, c := startServer(t)
	s.SetMode(ModeHang)
	errc := make(chan error, 1)
	go func() {
		resp, err := c.Post(s.URL()+"/v1/messages", "application/json", strings.NewReader(body(true)))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitRequests(t, s, 1)
	select {
	case err := <-errc:
		t.Fatalf("hang answered early: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("hung request got a complete answer")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hanging request")
	}
}

func TestHangReleasedByClient(t *testing.T) {
	s, c := startServer(t)
	s.SetMode(ModeHang)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(body(false)))
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// The handler must notice the client left: Close waits for it.
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on an abandoned hanging request")
	}
}

func TestSlow(t *testing.T) {
	s, c := startServer(t)
	s.SetMode(ModeSlow)
	s.SetSlow(150 * time.Millisecond)
	start := time.Now()
	resp := post(t, c, s.URL()+"/v1/messages", body(true))
	if _, err := readSSE(t, resp.Body); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, want >= 150ms", d)
	}
}

func TestCutStream(t *testing.T) {
	s, c := startServer(t)
	s.SetMode(ModeCutStream)
	resp := post(t, c, s.URL()+"/v1/messages", body(true))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	evs, err := readSSE(t, resp.Body)
	if err == nil {
		t.Fatal("cut stream ended cleanly")
	}
	var names []string
	for _, e := range evs {
		names = append(names, e.name)
	}
	if got := strings.Join(names, " "); got != "message_start content_block_start content_block_delta" {
		t.Errorf("events before the cut: %s", got)
	}

	resp = post(t, c, s.URL()+"/v1/messages", body(false))
	if b, err := io.ReadAll(resp.Body); err == nil || json.Valid(b) {
		t.Errorf("cut JSON reply read cleanly: %q, %v", b, err)
	}
}

func TestOtherPaths(t *testing.T) {
	s, c := startServer(t)
	s.SetMode(Mode500) // modes apply to /v1/messages only
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/models"},
		{"POST", "/v1/messages/count_tokens"},
		{"POST", "/api/event_logging/batch"},
		{"GET", "/"},
		{"HEAD", "/"},
		{"HEAD", "/v1/messages"},
	} {
		req, _ := http.NewRequest(r.method, s.URL()+r.path, strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "{}"
		if r.method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 200 || string(b) != want || resp.Header.Get("request-id") == "" {
			t.Errorf("%s %s: %d %q", r.method, r.path, resp.StatusCode, b)
		}
	}
	all := s.AllRequests()
	if len(all) != 6 || all[1].Method != "POST" || all[1].Path != "/v1/messages/count_tokens" || all[4].Method != "HEAD" {
		t.Errorf("AllRequests = %+v", all)
	}
	if len(s.Requests()) != 0 {
		t.Errorf("Requests() has other paths: %+v", s.Requests())
	}
}

func TestRecorded(t *testing.T) {
	s, c := startServer(t)
	post(t, c, s.URL()+"/v1/messages?beta=true", body(true))
	s.SetMode(Mode529)
	post(t, c, s.URL()+"/v1/messages", `{"model":"second","messages":[]}`)
	recs := s.Requests()
	if len(recs) != 2 {
		t.Fatalf("%d requests", len(recs))
	}
	r := recs[0]
	if r.Method != "POST" || r.Path != "/v1/messages" || r.Query != "beta=true" || r.Body != body(true) ||
		r.Request == nil || !r.Request.Stream || r.Mode != ModeOK || r.Header.Get("X-Api-Key") != "REDACTED" {
		t.Errorf("first %+v", r)
	}
	if recs[1].Request.Model != "second" || recs[1].Mode != Mode529 || !recs[1].Time.After(r.Time) {
		t.Errorf("second %+v", recs[1])
	}
	recs[0].Body = "changed"
	if s.Requests()[0].Body == "changed" {
		t.Error("Requests returned the server's own slice")
	}
}

func TestSetModeForReverts(t *testing.T) {
	s, c := startServer(t)
	s.SetModeFor(ModeRefuse, 100*time.Millisecond)
	if _, err := c.Get(s.URL()); !isRefused(err) {
		t.Fatalf("err = %v, want refused", err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.Mode() != ModeOK; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("mode never reverted")
		}
	}
	if resp := post(t, c, s.URL()+"/v1/messages", body(false)); resp.StatusCode != 200 {
		t.Errorf("status %d after revert", resp.StatusCode)
	}

	// A switch made meanwhile wins over the pending revert.
	s.SetModeFor(Mode529, 50*time.Millisecond)
	s.SetMode(Mode401)
	// Kept: the revert is a real-time timer of the server's own (no clock
	// is injected), and the point is that its deadline passes without
	// effect. Bounded; on a slow runner it can only pass vacuously, never
	// fail by luck.
	time.Sleep(150 * time.Millisecond)
	if s.Mode() != Mode401 {
		t.Errorf("mode %s, want 401", s.Mode())
	}
}

func TestConcurrentUse(t *testing.T) {
	s, c := startServer(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 10 {
				resp, err := c.Post(s.URL()+"/v1/messages", "application/json", strings.NewReader(body(i%2 == 0)))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				s.Requests()
			}
		})
	}
	for _, m := range []Mode{Mode529, ModeOK, ModeSlow, ModeOK, ModeRefuse, ModeOK} {
		s.SetSlow(time.Millisecond)
		s.SetMode(m)
		time.Sleep(5 * time.Millisecond) // kept: spreads the switches over the requests; nothing waits on it
	}
	wg.Wait()
	if s.Err() != nil {
		t.Error(s.Err())
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("Start after Close succeeded")
	}
	s.SetMode(ModeOK) // no listener comes back after Close
	if s.URL() != "" {
		t.Errorf("URL %q", s.URL())
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); got != m || err != nil {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if _, err := ParseMode("OK"); err == nil {
		t.Error("ParseMode accepted OK")
	}
}
