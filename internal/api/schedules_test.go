package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// fakeSchedules keeps schedules in memory, judging them with the schedule
// rules; err, when set, is every call's answer (a storage error).
type fakeSchedules struct {
	mu    sync.Mutex
	order []string
	byID  map[string]wire.Schedule
	added []wire.ScheduleIn // what reached AddSchedule
	err   error
}

func newFakeSchedules() *fakeSchedules { return &fakeSchedules{byID: map[string]wire.Schedule{}} }

var fakeNow = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func (f *fakeSchedules) Schedules(_ context.Context, chat string) ([]wire.Schedule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []wire.Schedule
	for _, id := range f.order {
		if s := f.byID[id]; chat == "" || s.ChatID == chat {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeSchedules) Schedule(_ context.Context, id string) (wire.Schedule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return wire.Schedule{}, f.err
	}
	s, ok := f.byID[id]
	if !ok {
		return wire.Schedule{}, store.ErrNotFound
	}
	return s, nil
}

func (f *fakeSchedules) AddSchedule(_ context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.added = append(f.added, in)
	if f.err != nil {
		return wire.Schedule{}, f.err
	}
	sp := schedule.Spec{Kind: schedule.Cron, Expr: in.Cron, TZ: in.TZ, Created: fakeNow}
	switch {
	case in.Every != "":
		sp.Kind, sp.Expr = schedule.Every, in.Every
	case in.At != "":
		sp.Kind, sp.Expr = schedule.At, in.At
	}
	sc, err := schedule.Parse(sp)
	if err != nil {
		return wire.Schedule{}, err
	}
	s := wire.Schedule{ID: fmt.Sprintf("s-%d", len(f.order)+1), ChatID: in.ChatID, Kind: string(sp.Kind), Expr: sp.Expr,
		TZ: in.TZ, Text: in.Text, CatchUp: in.CatchUp, CreatedAt: fakeNow.Format(time.RFC3339)}
	if s.CatchUp == "" {
		s.CatchUp = "one"
	}
	if n, ok := sc.Next(fakeNow); ok {
		s.Next = n.At.Format(time.RFC3339)
	}
	f.order = append(f.order, s.ID)
	f.byID[s.ID] = s
	return s, nil
}

func (f *fakeSchedules) RemoveSchedule(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if _, ok := f.byID[id]; !ok {
		return store.ErrNotFound
	}
	delete(f.byID, id)
	for i, o := range f.order {
		if o == id {
			f.order = append(f.order[:i], f.order[i+1:]...)
			break
		}
	}
	return nil
}

func (f *fakeSchedules) PauseSchedule(_ context.Context, id string, paused bool) (wire.Schedule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return wire.Schedule{}, f.err
	}
	s, ok := f.byID[id]
	if !ok {
		return wire.Schedule{}, store.ErrNotFound
	}
	s.Paused = paused
	f.byID[id] = s
	return s, nil
}

func TestScheduleRoutes(t *testing.T) {
	h, b := newTestHandler()
	long := strings.Repeat("x", maxSchedExpr+1)
	big := strings.Repeat("x", MaxText+1)
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string // in the error, or in the answer
	}{
		{"empty list", "GET", "/v1/schedules", ``, 200, `"schedules":[]`},
		{"add cron", "POST", "/v1/schedules", `{"chat_id":"alice","text":"summarise my inbox","cron":"0 8 * * 1-5","tz":"Europe/Berlin"}`, 201, `"id":"s-1"`},
		{"add every", "POST", "/v1/schedules", `{"chat_id":"bob","text":"ping","every":"30m","catch_up":"none"}`, 201, `"catch_up":"none"`},
		{"add at", "POST", "/v1/schedules", `{"chat_id":"alice","text":"remind me","at":"2026-12-24T17:00","tz":"Europe/Berlin"}`, 201, `"next":"2026-12-24T16:00:00Z"`},
		{"list", "GET", "/v1/schedules", ``, 200, `"s-3"`},
		{"list of a chat", "GET", "/v1/schedules?chat=bob", ``, 200, `"every"`},
		{"list of a bad chat", "GET", "/v1/schedules?chat=a%07b", ``, 400, "chat_id"},
		{"get", "GET", "/v1/schedules/s-1", ``, 200, `"expr":"0 8 * * 1-5"`},
		{"get unknown", "GET", "/v1/schedules/s-99", ``, 404, `no schedule \"s-99\"`},
		{"pause", "POST", "/v1/schedules/s-1/pause", ``, 200, `"paused":true`},
		{"resume", "POST", "/v1/schedules/s-1/resume", ``, 200, `"paused":false`},
		{"pause unknown", "POST", "/v1/schedules/nope/pause", ``, 404, `no schedule \"nope\"`},
		{"resume unknown", "POST", "/v1/schedules/nope/resume", ``, 404, `no schedule \"nope\"`},
		{"remove", "DELETE", "/v1/schedules/s-2", ``, 204, ""},
		{"remove again", "DELETE", "/v1/schedules/s-2", ``, 404, `no schedule \"s-2\"`},
		{"bad cron", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"61 8 * * *"}`, 400, "above maximum"},
		{"six fields", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"0 0 8 * * *"}`, 400, "expected exactly 5 fields"},
		{"bad zone", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"0 8 * * *","tz":"Mars/Olympus"}`, 400, `unknown time zone \"Mars/Olympus\"`},
		{"bad interval", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","every":"10s"}`, 400, "shorter than the minimum"},
		{"bad time", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","at":"tomorrow"}`, 400, "not a time"},
		{"no kind", "POST", "/v1/schedules", `{"chat_id":"a","text":"t"}`, 400, "exactly one of cron, every and at"},
		{"two kinds", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"0 8 * * *","every":"1h"}`, 400, "exactly one of cron, every and at"},
		{"zone only", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","tz":"UTC"}`, 400, "exactly one of"},
		{"bad catch-up", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","every":"1h","catch_up":"some"}`, 400, "catch_up: unknown catch-up policy"},
		{"no chat", "POST", "/v1/schedules", `{"text":"t","every":"1h"}`, 400, "chat_id is required"},
		{"bad chat", "POST", "/v1/schedules", `{"chat_id":" a","text":"t","every":"1h"}`, 400, "white space"},
		{"no text", "POST", "/v1/schedules", `{"chat_id":"a","every":"1h"}`, 400, "text is required"},
		{"text too big", "POST", "/v1/schedules", `{"chat_id":"a","every":"1h","text":"` + big + `"}`, 413, "limit is"},
		{"long expression", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"` + long + `"}`, 400, "cron is 513 bytes"},
		{"long zone", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","cron":"0 8 * * *","tz":"` + long + `"}`, 400, "tz is 513 bytes"},
		{"unknown field", "POST", "/v1/schedules", `{"chat_id":"a","text":"t","every":"1h","when":"now"}`, 400, "unknown field"},
		{"bad json", "POST", "/v1/schedules", `{"chat_id":`, 400, "invalid JSON"},
		{"wrong method", "PUT", "/v1/schedules/s-1", ``, 405, "allowed: GET, HEAD, DELETE"},
	}
	for _, tt := range tests {
		code, body := doRaw(h, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %s %s = %d %s, want %d with %q", tt.name, tt.method, tt.path, code, body, tt.code, tt.want)
		}
	}
	// Only what passed the checks reached the backend (the expressions
	// the backend itself refused among them).
	for _, in := range b.added {
		if in.Text == "" || len(in.Text) > MaxText || ValidChatID(in.ChatID) != nil {
			t.Errorf("the backend got %+v", in)
		}
	}
	if len(b.added) != 8 {
		t.Errorf("%d adds reached the backend, want 8", len(b.added))
	}
}

// A storage error is a 503 saying what failed.
func TestScheduleRoutesUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("insert: %w", store.ErrIO), "database cannot be written"},
	} {
		h, b := newTestHandler()
		b.fakeSchedules.err = tc.err
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/schedules", ``},
			{"POST", "/v1/schedules", `{"chat_id":"a","text":"t","every":"1h"}`},
			{"GET", "/v1/schedules/s-1", ``},
			{"DELETE", "/v1/schedules/s-1", ``},
			{"POST", "/v1/schedules/s-1/pause", ``},
			{"POST", "/v1/schedules/s-1/resume", ``},
		} {
			if code, body := doRaw(h, r.method, r.path, r.body); code != 503 || !strings.Contains(body, tc.want) {
				t.Errorf("%v: %s %s = %d %s, want 503 with %q", tc.err, r.method, r.path, code, body, tc.want)
			}
		}
	}
}

// doRaw is do with the answer's body as text.
func doRaw(h http.Handler, method, path, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// FuzzPostSchedule: any body gets 201 or a 4xx with a reason — never a
// 5xx or a panic — and what reaches the backend passed the checks.
func FuzzPostSchedule(f *testing.F) {
	for _, s := range []string{
		`{"chat_id":"alice","text":"hi","cron":"0 8 * * 1-5","tz":"Europe/Berlin"}`,
		`{"chat_id":"a","text":"t","every":"30m","catch_up":"all"}`,
		`{"chat_id":"a","text":"t","at":"2026-12-24T17:00"}`,
		`{"chat_id":"a","text":"t","cron":"61 * * * *"}`, `{"chat_id":"a","text":"t","cron":"@every 5m"}`,
		`{"chat_id":"a","text":"t","cron":"CRON_TZ=Local 0 8 * * *"}`, `{"chat_id":"a","text":"t","at":"x","tz":"Local"}`,
		`{}`, `[]`, `null`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, b := newTestHandler()
		code, out := doRaw(h, "POST", "/v1/schedules", string(body))
		switch {
		case code == 201:
			if len(b.added) != 1 {
				t.Fatalf("201 but %d adds reached the backend", len(b.added))
			}
		case code >= 400 && code < 500:
			if !strings.Contains(out, `"error":"`) || strings.Contains(out, `"error":""`) {
				t.Fatalf("%d without a reason: %s", code, out)
			}
		default:
			t.Fatalf("status %d for body %q: %s", code, body, out)
		}
		for _, in := range b.added {
			if in.Text == "" || len(in.Text) > MaxText || ValidChatID(in.ChatID) != nil {
				t.Fatalf("the backend got %+v", in)
			}
		}
	})
}
