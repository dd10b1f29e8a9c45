package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
)

// backend is an in-memory Backend that records accepted messages.
type backend struct {
	mu       sync.Mutex
	accepted []MessageIn
	perms    *permission.Broker
	*fakeSchedules
}

func (b *backend) Submit(_ context.Context, chat, text, clientID string) (string, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.accepted {
		if clientID != "" && m.ChatID == chat && m.ClientID == clientID {
			if m.Text != text {
				return "", false, store.ErrConflict
			}
			return fmt.Sprintf("gen-%d", i+1), true, nil
		}
	}
	b.accepted = append(b.accepted, MessageIn{ChatID: chat, Text: text, ClientID: clientID})
	return fmt.Sprintf("gen-%d", len(b.accepted)), false, nil
}
func (b *backend) Message(_ context.Context, id string) (store.Message, error) {
	if id == "known" {
		return store.Message{ID: id, ChatID: "c", State: store.Done, Reply: "r"}, nil
	}
	return store.Message{}, store.ErrNotFound
}
func (b *backend) MessagePage(context.Context, store.Filter, int64, int, int) ([]store.Listed, bool, error) {
	return nil, false, nil
}
func (b *backend) Status(context.Context) (supervisor.Status, error) {
	return supervisor.Status{Sessions: []supervisor.SessionStatus{}}, nil
}
func (b *backend) Kill(_ context.Context, chat string) error {
	if chat != "known" {
		return supervisor.ErrUnknownChat
	}
	return nil
}
func (b *backend) Restart(ctx context.Context, chat string, _ bool) error { return b.Kill(ctx, chat) }
func (b *backend) Pause(ctx context.Context, chat string) error           { return b.Kill(ctx, chat) }
func (b *backend) Resume(ctx context.Context, chat string) error          { return b.Kill(ctx, chat) }
func (b *backend) ChatHold(string) (bool, string)                         { return false, "" }
func (b *backend) ChatPaused(string) bool                                 { return false }
func (b *backend) Permissions() *permission.Broker                        { return b.perms }
func (b *backend) Exempt(context.Context, string, bool) error             { return nil }
func (b *backend) RetryMessage(context.Context, string) error             { return store.ErrNotFound }
func (b *backend) DropMessage(context.Context, string) error              { return store.ErrNotFound }
func (b *backend) Healthy() bool                                          { return true }
func (b *backend) Ready(context.Context) error                            { return nil }

func newTestHandler() (http.Handler, *backend) {
	b := &backend{fakeSchedules: newFakeSchedules()}
	return Handler(b, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), b
}

func do(h http.Handler, method, path, body string) (int, map[string]any) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestRequests(t *testing.T) {
	h, _ := newTestHandler()
	big := strings.Repeat("x", MaxText+1)
	tests := []struct {
		name, method, path, body string
		code                     int
		errPart                  string
	}{
		{"accept", "POST", "/v1/messages", `{"chat_id":"alice","text":"hi"}`, 202, ""},
		{"accept with client id", "POST", "/v1/messages", `{"chat_id":"alice","text":"hi","client_id":"c1"}`, 202, ""},
		{"duplicate", "POST", "/v1/messages", `{"chat_id":"alice","text":"hi","client_id":"c1"}`, 202, ""},
		{"client id reused for another text", "POST", "/v1/messages", `{"chat_id":"alice","text":"other","client_id":"c1"}`, 409, "conflict"},
		{"client id in another chat", "POST", "/v1/messages", `{"chat_id":"bob","text":"other","client_id":"c1"}`, 202, ""},
		{"message id chosen by client", "POST", "/v1/messages", `{"chat_id":"alice","text":"hi","id":"c1"}`, 400, "client_id"},
		{"control char in client id", "POST", "/v1/messages", `{"chat_id":"alice","text":"hi","client_id":"a\u0007"}`, 400, "client_id"},
		{"empty chat", "POST", "/v1/messages", `{"chat_id":"","text":"hi"}`, 400, "chat_id is required"},
		{"long chat", "POST", "/v1/messages", `{"chat_id":"` + strings.Repeat("a", 257) + `","text":"hi"}`, 400, "limit is 256"},
		{"control char", "POST", "/v1/messages", `{"chat_id":"a\u0007b","text":"hi"}`, 400, "control"},
		{"newline in chat", "POST", "/v1/messages", `{"chat_id":"a\nb","text":"hi"}`, 400, "control"},
		{"leading space in chat", "POST", "/v1/messages", `{"chat_id":" a","text":"hi"}`, 400, "white space"},
		{"trailing space in chat", "POST", "/v1/messages", `{"chat_id":"a ","text":"hi"}`, 400, "white space"},
		{"all space chat", "POST", "/v1/messages", `{"chat_id":"   ","text":"hi"}`, 400, "white space"},
		{"inner space in chat", "POST", "/v1/messages", `{"chat_id":"family group","text":"hi"}`, 202, ""},
		{"empty text", "POST", "/v1/messages", `{"chat_id":"a","text":""}`, 400, "text is required"},
		{"text too big", "POST", "/v1/messages", `{"chat_id":"a","text":"` + big + `"}`, 413, "limit is"},
		{"body too big", "POST", "/v1/messages", `{"chat_id":"a","text":"` + strings.Repeat("x", maxBody) + `"}`, 413, "request body over"},
		{"bad json", "POST", "/v1/messages", `{"chat_id":`, 400, "invalid JSON"},
		{"unknown field", "POST", "/v1/messages", `{"chat_id":"a","text":"b","x":1}`, 400, "unknown field"},
		{"two values", "POST", "/v1/messages", `{"chat_id":"a","text":"b"}{}`, 400, "more than one"},
		{"wrong type", "POST", "/v1/messages", `{"chat_id":5,"text":"b"}`, 400, "invalid JSON"},
		{"get known", "GET", "/v1/messages/known", ``, 200, ""},
		{"get unknown", "GET", "/v1/messages/nope", ``, 404, "not found"},
		{"unknown route", "GET", "/v2/x", ``, 404, "no route"},
		{"wrong method", "DELETE", "/v1/messages", ``, 405, "allowed: POST"},
		{"delete a message", "DELETE", "/v1/messages/known", ``, 405, "allowed: GET"},
		{"no-break space in chat", "POST", "/v1/messages", `{"chat_id":"a\u00a0b","text":"hi"}`, 400, "non-printable"},
		{"kill unknown", "POST", "/v1/sessions/kill", `{"chat_id":"who"}`, 404, "unknown chat"},
		{"kill known", "POST", "/v1/sessions/kill", `{"chat_id":"known"}`, 200, ""},
		{"retry unknown", "POST", "/v1/queue/retry", `{"id":"x"}`, 404, "not found"},
		{"queue bad state", "GET", "/v1/queue?state=weird", ``, 400, "not one of"},
		{"queue bad limit", "GET", "/v1/queue?limit=0", ``, 400, "limit"},
		{"status", "GET", "/v1/status", ``, 200, ""},
		{"healthz", "GET", "/healthz", ``, 200, ""},
		{"readyz", "GET", "/readyz", ``, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := do(h, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("%s %s = %d %v, want %d", tt.method, tt.path, code, out, tt.code)
			}
			if tt.errPart != "" {
				msg, _ := out["error"].(string)
				if !strings.Contains(msg, tt.errPart) {
					t.Fatalf("error %q does not mention %q", msg, tt.errPart)
				}
			}
		})
	}
	_, first := do(h, "POST", "/v1/messages", `{"chat_id":"carol","text":"hi","client_id":"k"}`)
	if _, out := do(h, "POST", "/v1/messages", `{"chat_id":"carol","text":"hi","client_id":"k"}`); out["duplicate"] != true || out["id"] != first["id"] {
		t.Fatalf("repeat of a client id = %v, want a duplicate of %v", out, first)
	}
	if _, out := do(h, "POST", "/v1/messages", `{"chat_id":"dave","text":"hi","client_id":"k"}`); out["duplicate"] != false || out["id"] == first["id"] {
		t.Fatalf("client id of another chat = %v, want a new message (not %v)", out, first["id"])
	}
}

// FuzzPostMessage: any body gets 202 or a 4xx with a reason — never a 5xx
// or a panic — and only valid input reaches the backend.
func FuzzPostMessage(f *testing.F) {
	for _, s := range []string{
		`{"chat_id":"alice","text":"hi"}`, `{"chat_id":"a","text":"b","id":"c"}`, `{}`, `[]`, `null`,
		`{"chat_id":"\u0000","text":"x"}`, `{"chat_id":"../../etc/passwd","text":"x"}`, `{"text":"x"}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, b := newTestHandler()
		code, out := do(h, "POST", "/v1/messages", string(body))
		switch {
		case code == 202:
			if len(b.accepted) != 1 {
				t.Fatalf("202 but %d messages reached the backend", len(b.accepted))
			}
			m := b.accepted[0]
			if ValidChatID(m.ChatID) != nil || m.Text == "" || len(m.Text) > MaxText || !utf8.ValidString(m.Text) {
				t.Fatalf("invalid message accepted: %+v", m)
			}
		case code >= 400 && code < 500:
			if len(b.accepted) != 0 {
				t.Fatalf("%d but the backend got a message", code)
			}
			if msg, _ := out["error"].(string); msg == "" {
				t.Fatalf("%d without a reason", code)
			}
		default:
			t.Fatalf("status %d for body %q", code, body)
		}
	})
}

// A wrong method on a known path is 405 with an Allow header naming the
// methods it takes; an unknown path stays 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	h := Handler(&backend{}, nil, nil, slog.New(slog.DiscardHandler))
	for _, tt := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/messages/abc", "GET, HEAD"},
		{"PUT", "/v1/messages", "POST"},
		{"GET", "/v1/sessions/kill", "POST"},
		{"POST", "/v1/status", "GET, HEAD"},
		{"DELETE", "/v1/queue/retry", "GET, HEAD, POST"}, // GET reads message "retry"
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q (%s)", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), tt.allow, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("DELETE", "/v1/nothing-here", nil))
	if rec.Code != http.StatusNotFound || rec.Header().Get("Allow") != "" {
		t.Errorf("DELETE of an unknown path = %d, Allow %q; want 404 without Allow", rec.Code, rec.Header().Get("Allow"))
	}
}
