package api

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

func TestPermissionRoutes(t *testing.T) {
	mem := permission.NewMemory()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	b := &backend{perms: permission.NewBroker(mem, clk, time.Minute, func() string { return "req-1" })}
	h := Handler(b, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))

	if code, out := do(h, "GET", "/v1/permissions", ""); code != 200 || len(out["requests"].([]any)) != 0 {
		t.Fatalf("empty list = %d %v", code, out)
	}
	asked := make(chan permission.Request, 1)
	go func() {
		r, err := b.perms.Ask(context.Background(), "alice", permission.Question{Tool: "Bash", Summary: "touch x"})
		if err != nil {
			t.Error(err)
		}
		asked <- r
	}()
	for len(mem.Events()) == 0 {
		time.Sleep(time.Millisecond) // the broker keeps the request
	}
	code, out := do(h, "GET", "/v1/permissions?chat=alice", "")
	reqs := out["requests"].([]any)
	if code != 200 || len(reqs) != 1 || reqs[0].(map[string]any)["summary"] != "touch x" || reqs[0].(map[string]any)["tool"] != "Bash" {
		t.Fatalf("list = %d %v", code, out)
	}
	if code, out := do(h, "GET", "/v1/permissions?chat=bob", ""); code != 200 || len(out["requests"].([]any)) != 0 {
		t.Fatalf("another chat's list = %d %v", code, out)
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
	}{
		{"unknown id", "/v1/permissions/nope", `{"decision":"allow"}`, 404},
		{"bad decision", "/v1/permissions/req-1", `{"decision":"expired"}`, 400},
		{"no decision", "/v1/permissions/req-1", `{}`, 400},
		{"bad by", "/v1/permissions/req-1", `{"decision":"allow","by":"a\u202eb"}`, 400},
		{"allow always", "/v1/permissions/req-1", `{"decision":"allow_always","by":"cli:ann"}`, 200},
		{"a second answer", "/v1/permissions/req-1", `{"decision":"deny"}`, 409},
	} {
		if code, out := do(h, "POST", tc.path, tc.body); code != tc.code {
			t.Fatalf("%s: %d %v, want %d", tc.name, code, out, tc.code)
		}
	}
	if r := <-asked; r.Decision != permission.AllowAlways || r.DecidedBy != "cli:ann" {
		t.Fatalf("the agent was told %+v", r)
	}
	if code, out := do(h, "GET", "/v1/permissions/req-1", ""); code != 200 || out["decision"] != "allow_always" {
		t.Fatalf("get closed = %d %v", code, out)
	}
	evs := mem.Events()
	if len(evs) != 2 || evs[1].Type != events.PermissionDecided || evs[1].By != "cli:ann" {
		t.Fatalf("events = %+v", evs)
	}
	code, out = do(h, "GET", "/v1/permissions/rules", "")
	if rules := out["rules"].([]any); code != 200 || len(rules) != 1 || rules[0].(map[string]any)["tool"] != "Bash" {
		t.Fatalf("rules = %d %v", code, out)
	}
	if code, _ := do(h, "POST", "/v1/permissions/rules/remove", `{"chat_id":"alice","tool":"Bash"}`); code != 200 {
		t.Fatalf("remove = %d", code)
	}
	if code, _ := do(h, "POST", "/v1/permissions/rules/remove", `{"chat_id":"alice","tool":"Bash"}`); code != 404 {
		t.Fatalf("remove again = %d", code)
	}
	// Without a broker the routes say so.
	h2, _ := newTestHandler()
	if code, _ := do(h2, "GET", "/v1/permissions", ""); code != 404 {
		t.Fatalf("without a broker = %d", code)
	}
}
