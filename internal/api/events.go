package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// EventsBackend is what the event feed and webhook routes need (see
// Handler).
type EventsBackend interface {
	// Events reads the feed (see store.Store.Events): never past the
	// visible mark, an *events.ErrGone for a purged position.
	Events(ctx context.Context, q events.Query) ([]events.Event, int64, error)
	// EventsVisible returns the visible mark and a channel closed when it
	// next moves up.
	EventsVisible() (int64, <-chan struct{})
	Webhooks(ctx context.Context) ([]webhook.EndpointStatus, error)
	RetryWebhook(ctx context.Context, name string) (int, error)
	// The chat-app channels are delivered from the same feed.
	ChannelsBackend
}

// Feed limits.
const (
	MaxWait = 60 * time.Second
)

// KeepAlive is how often an idle event stream gets a comment line (a
// variable for tests).
var KeepAlive = 15 * time.Second

// The feed's shapes are the wire package's.
type (
	EventsOut    = wire.EventsOut
	GoneOut      = wire.GoneOut
	WebhookRetry = wire.WebhookRetry
)

type eventsHandler struct {
	h         *handler
	b         EventsBackend
	keepAlive time.Duration
}

func registerEvents(mux *http.ServeMux, h *handler, b EventsBackend) {
	e := &eventsHandler{h: h, b: b, keepAlive: KeepAlive}
	mux.HandleFunc("GET /v1/events", e.events)
	mux.HandleFunc("GET /v1/webhooks", e.webhooks)
	mux.HandleFunc("POST /v1/webhooks/retry", e.retry)
}

// parseQuery reads after, limit, chat and types; wait is returned apart.
func parseQuery(r *http.Request) (events.Query, time.Duration, error) {
	v := r.URL.Query()
	var q events.Query
	if s := v.Get("after"); s != "" {
		n, err := events.SeqOf(s)
		if err != nil {
			return q, 0, fmt.Errorf("after: %w", err)
		}
		q.After, q.HasAfter = n, true
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > events.MaxLimit {
			return q, 0, fmt.Errorf("limit must be a number from 1 to %d", events.MaxLimit)
		}
		q.Limit = n
	}
	if s := v.Get("chat"); s != "" {
		if err := ValidChatID(s); err != nil {
			return q, 0, err
		}
		q.ChatID = s
	}
	if s := v.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > events.MaxLimit {
			return q, 0, fmt.Errorf("tail must be a number from 1 to %d", events.MaxLimit)
		}
		if q.HasAfter || v.Get("limit") != "" {
			return q, 0, errors.New("tail goes without after and limit: it reads the last events")
		}
		q.Tail, q.Limit = true, n
	}
	types, err := events.ParseTypes(v.Get("types"))
	if err != nil {
		return q, 0, fmt.Errorf("types: %w", err)
	}
	q.Types = types
	var wait time.Duration
	if s := v.Get("wait"); s != "" {
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			wait = time.Duration(n * float64(time.Second))
		} else if wait, err = time.ParseDuration(s); err != nil {
			return q, 0, errors.New(`wait must be a duration ("30s") or a number of seconds`)
		}
		if wait < 0 || wait > MaxWait {
			return q, 0, fmt.Errorf("wait must be from 0 to %s", MaxWait)
		}
	}
	return q, wait, nil
}

func wantsStream(r *http.Request) bool {
	for _, a := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(a), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
			return true
		}
	}
	return false
}

func (e *eventsHandler) gone(w http.ResponseWriter, g *events.ErrGone) {
	writeJSON(w, http.StatusGone, GoneOut{
		Error:  fmt.Sprintf("events before seq %d are no longer kept (events.retain); read from after=%d, and expect to have missed events", g.Oldest, g.Oldest-1),
		Oldest: g.Oldest,
	})
}

func (e *eventsHandler) events(w http.ResponseWriter, r *http.Request) {
	q, wait, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if wantsStream(r) {
		e.stream(w, r, q)
		return
	}
	rc := http.NewResponseController(w)
	if wait > 0 {
		// A long poll outlives the server's read timeout; the request
		// is read already.
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Now().Add(wait + 30*time.Second))
	}
	var timer *time.Timer
	for {
		_, changed := e.b.EventsVisible()
		evs, next, err := e.b.Events(r.Context(), q)
		if g, ok := events.IsGone(err); ok {
			e.gone(w, g)
			return
		}
		if err != nil {
			e.h.fail(w, "read events", err)
			return
		}
		if len(evs) > 0 || wait <= 0 {
			if evs == nil {
				evs = []events.Event{}
			}
			writeJSON(w, http.StatusOK, EventsOut{Events: evs, Next: next})
			return
		}
		if !q.HasAfter {
			// Nothing kept yet: wait from where the feed ends now.
			q.After, q.HasAfter = next, true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-changed:
		case <-timer.C:
			wait = 0 // answer what there is (nothing)
		case <-r.Context().Done():
			return
		}
	}
}

// stream serves the feed as Server-Sent Events: "id: <seq>", "event:
// <type>", "data: <event JSON>", resuming after Last-Event-ID (or after),
// with a comment line whenever it was quiet for the keep-alive interval.
func (e *eventsHandler) stream(w http.ResponseWriter, r *http.Request, q events.Query) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := events.SeqOf(id)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Last-Event-ID: "+err.Error())
			return
		}
		q.After, q.HasAfter, q.Tail = n, true, false
	}
	if !q.Tail {
		q.Limit = events.MaxLimit
	}
	ctx := r.Context()
	_, changed := e.b.EventsVisible()
	evs, next, err := e.b.Events(ctx, q)
	if g, ok := events.IsGone(err); ok {
		e.gone(w, g)
		return
	}
	if err != nil {
		e.h.fail(w, "read events", err)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(s string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The retry hint and a first comment tell the client the stream is on.
	if !write("retry: 2000\n: dispatch event stream\n\n") {
		return
	}
	keep := time.NewTicker(e.keepAlive)
	defer keep.Stop()
	for {
		if len(evs) > 0 {
			var b strings.Builder
			for _, ev := range evs {
				data, err := json.Marshal(ev)
				if err != nil {
					return
				}
				fmt.Fprintf(&b, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, data)
			}
			if !write(b.String()) {
				return
			}
			keep.Reset(e.keepAlive)
		}
		q.After, q.HasAfter = next, true
		if q.Tail {
			// The last events are out; from here on follow the feed.
			q.Tail, q.Limit = false, events.MaxLimit
			evs = nil
		}
		if len(evs) < q.Limit {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-keep.C:
				if !write(": keep-alive\n\n") {
					return
				}
				evs = nil // sent already
				continue
			}
		}
		_, changed = e.b.EventsVisible()
		evs, next, err = e.b.Events(ctx, q)
		if err != nil {
			// Purged past this reader (or the store failed): end the
			// stream; a reconnect with Last-Event-ID gets the 410.
			return
		}
	}
}

func (e *eventsHandler) webhooks(w http.ResponseWriter, r *http.Request) {
	sts, err := e.b.Webhooks(r.Context())
	if err != nil {
		e.h.fail(w, "webhooks", err)
		return
	}
	if sts == nil {
		sts = []webhook.EndpointStatus{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": sts})
}

func (e *eventsHandler) retry(w http.ResponseWriter, r *http.Request) {
	var in WebhookRetry
	if !decode(w, r, &in, maxCtlBody) {
		return
	}
	if err := validKey("endpoint", in.Endpoint, 1024); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := e.b.RetryWebhook(r.Context(), in.Endpoint)
	if errors.Is(err, webhook.ErrUnknownEndpoint) {
		writeError(w, http.StatusNotFound, "unknown webhook endpoint")
		return
	}
	if err != nil {
		e.h.fail(w, "retry webhook deliveries", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "endpoint": in.Endpoint, "retried": n})
}
