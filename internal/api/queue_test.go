package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/store"
)

// pager serves pages from a fixed list, or fails with err.
type pager struct {
	*backend
	msgs []store.Listed
	err  error
	got  struct {
		after       int64
		limit, clip int
	}
}

func (p *pager) MessagePage(_ context.Context, _ store.Filter, after int64, limit, clip int) ([]store.Listed, bool, error) {
	p.got.after, p.got.limit, p.got.clip = after, limit, clip
	if p.err != nil {
		return nil, false, p.err
	}
	var out []store.Listed
	for _, m := range p.msgs {
		if m.Seq > after {
			out = append(out, m)
		}
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func TestQueuePaging(t *testing.T) {
	p := &pager{backend: &backend{}}
	for i := range 5 {
		p.msgs = append(p.msgs, store.Listed{Message: store.Message{Seq: int64(i + 1), ID: string(rune('a' + i)), Text: "x"}, TextBytes: 1 << 20})
	}
	h := Handler(p, nil, nil, slog.New(slog.DiscardHandler))
	get := func(q string) (int, QueuePage) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/queue"+q, nil))
		var page QueuePage
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
				t.Fatalf("%s: %v: %s", q, err, rec.Body)
			}
		}
		return rec.Code, page
	}
	code, page := get("?limit=2")
	if code != 200 || len(page.Messages) != 2 || page.Next != "2" {
		t.Fatalf("first page: %d %+v", code, page)
	}
	if p.got.clip != ListClip {
		t.Errorf("clip = %d, want %d", p.got.clip, ListClip)
	}
	if m := page.Messages[0]; !m.Truncated || m.TextBytes != 1<<20 {
		t.Errorf("a clipped text is not marked: %+v", m)
	}
	_, page = get("?limit=2&after=" + page.Next)
	if len(page.Messages) != 2 || page.Messages[0].ID != "c" || page.Next != "4" {
		t.Fatalf("second page: %+v", page)
	}
	_, page = get("?limit=2&after=4")
	if len(page.Messages) != 1 || page.Next != "" {
		t.Fatalf("last page: %+v", page)
	}
	if get(""); p.got.limit != DefaultQueuePage {
		t.Errorf("default limit = %d", p.got.limit)
	}
	for _, q := range []string{"?limit=1001", "?limit=100000", "?limit=0", "?after=-1", "?after=x"} {
		if code, _ := get(q); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}

// A 500 tells the client nothing about the daemon's insides; the log has
// the detail.
func TestInternalErrorIsGeneric(t *testing.T) {
	var log strings.Builder
	p := &pager{backend: &backend{}, err: errors.New("open /secret/path/dispatch.db: disk I/O error")}
	h := Handler(p, nil, nil, slog.New(slog.NewTextHandler(&log, nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/queue", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "disk I/O") {
		t.Errorf("the 500 leaks the detail: %s", rec.Body)
	}
	if !strings.Contains(log.String(), "/secret/path/dispatch.db") {
		t.Errorf("the log lacks the detail: %s", log.String())
	}
}

// POST bodies must be declared JSON.
func TestPostRequiresJSONContentType(t *testing.T) {
	h, b := newTestHandler()
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"chat_id":"alice","text":"hi"}`))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 415 {
			t.Errorf("Content-Type %q: %d, want 415", ct, rec.Code)
		}
	}
	if len(b.accepted) != 0 {
		t.Errorf("%d messages accepted without a JSON content type", len(b.accepted))
	}
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"chat_id":"alice","text":"hi"}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 202 {
		t.Errorf("application/json; charset=utf-8: %d", rec.Code)
	}
}

// The page size clients ask for is the most the store gives.
func TestQueuePageLimitMatchesStore(t *testing.T) {
	if MaxQueuePage != store.MaxPage {
		t.Errorf("wire.MaxQueuePage %d, store.MaxPage %d", MaxQueuePage, store.MaxPage)
	}
}
