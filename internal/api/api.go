// Package api is dispatch's HTTP control API, served on the unix control
// socket (and on TCP when configured). Its JSON shapes live in the wire
// package. Every request is validated here; bad input gets a 4xx with
// a reason and never reaches the store.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Input limits: see the wire package.
const (
	MaxChatID  = wire.MaxChatID
	MaxText    = wire.MaxText
	MaxID      = wire.MaxID // message ids and client ids
	maxBody    = 8 << 20    // a 1 MiB text JSON-escaped can grow; past this: 413
	maxCtlBody = 64 << 10
)

// Backend is what the API drives: the supervisor and its store.
type Backend interface {
	Submit(ctx context.Context, chat, text, clientID string) (string, bool, error)
	Message(ctx context.Context, id string) (store.Message, error)
	MessagePage(ctx context.Context, f store.Filter, after int64, limit, clip int) ([]store.Listed, bool, error)
	Status(ctx context.Context) (supervisor.Status, error)
	Kill(ctx context.Context, chat string) error
	Pause(ctx context.Context, chat string) error
	Resume(ctx context.Context, chat string) error
	ChatHold(chat string) (held bool, reason string)
	ChatPaused(chat string) bool
	Restart(ctx context.Context, chat string, clean bool) error
	Exempt(ctx context.Context, chat string, on bool) error
	RetryMessage(ctx context.Context, id string) error
	DropMessage(ctx context.Context, id string) error
	Healthy() bool
	Ready(ctx context.Context) error
	// Permissions is the broker that asks people for the agents (nil:
	// the permission routes answer 404).
	Permissions() *permission.Broker
	// The schedules fire into the queue.
	SchedulesBackend
}

// Handler returns the API's routes. feed serves the event feed and the
// webhook routes (GET /v1/events, GET /v1/webhooks, POST
// /v1/webhooks/retry); nil leaves them out, a choice the caller makes.
func Handler(b Backend, feed EventsBackend, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	h := &handler{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", h.postMessage)
	mux.HandleFunc("GET /v1/messages/{id}", h.getMessage)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/sessions", h.sessions)
	mux.HandleFunc("POST /v1/sessions/kill", h.kill)
	mux.HandleFunc("POST /v1/sessions/restart", h.restart)
	mux.HandleFunc("POST /v1/sessions/exempt", h.exempt)
	mux.HandleFunc("POST /v1/sessions/pause", h.pause)
	mux.HandleFunc("POST /v1/sessions/resume", h.resume)
	mux.HandleFunc("GET /v1/queue", h.queue)
	mux.HandleFunc("GET /v1/queue/{id}", h.queueMessage)
	mux.HandleFunc("POST /v1/queue/retry", h.retry)
	mux.HandleFunc("POST /v1/queue/drop", h.drop)
	registerPermissions(mux, h)
	registerSchedules(mux, h)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	if feed != nil {
		registerEvents(mux, h, feed)
		registerChannels(mux, h, feed)
	}
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A known path asked with another method is 405 with the methods
		// it takes, not 404: DELETE /v1/messages/ID is not a missing
		// message.
		if allow := allowed(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return recoverer(log, mux)
}

// allowed lists the methods that have a route for r's path (HEAD with
// GET), by asking mux which pattern each would reach; the catch-all "/"
// does not count.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

type handler struct {
	b   Backend
	log *slog.Logger
}

// The request and answer shapes are the wire package's; these names are
// the ones the API's users have always had.
type (
	MessageIn   = wire.MessageIn
	Accepted    = wire.Accepted
	MessageOut  = wire.MessageOut
	ChatRequest = wire.ChatRequest
	IDRequest   = wire.IDRequest
)

// Out converts a stored message; text is included only when withText.
func Out(m store.Message, withText bool) MessageOut {
	o := MessageOut{
		ID: m.ID, ChatID: m.ChatID, ClientID: m.ClientID, State: string(m.State), Attempts: m.Attempts, Failures: m.Failures,
		Reply: m.Reply, Error: m.Error, TurnID: m.TurnID,
		CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339Nano), UpdatedAt: m.UpdatedAt.UTC().Format(time.RFC3339Nano),
	}
	if withText {
		o.Text = m.Text
	}
	return o
}

// ValidChatID checks a chat id with the one rule (see wire.ChatIDProblem).
func ValidChatID(s string) error { return wire.ValidChatID(s) }

func validKey(name, s string, limit int) error { return wire.ValidKey(name, s, limit) }

// status codes for validation failures
type inputError struct {
	code int
	msg  string
}

func (e *inputError) Error() string { return e.msg }

func validMessage(in MessageIn) error {
	if err := ValidChatID(in.ChatID); err != nil {
		return &inputError{http.StatusBadRequest, err.Error()}
	}
	if in.ID != "" {
		return &inputError{http.StatusBadRequest, "id is chosen by dispatch; give your own key for the message as client_id"}
	}
	if in.ClientID != "" {
		if err := validKey("client_id", in.ClientID, MaxID); err != nil {
			return &inputError{http.StatusBadRequest, err.Error()}
		}
	}
	switch {
	case in.Text == "":
		return &inputError{http.StatusBadRequest, "text is required"}
	case len(in.Text) > MaxText:
		return &inputError{http.StatusRequestEntityTooLarge, fmt.Sprintf("text is %d bytes; the limit is %d", len(in.Text), MaxText)}
	case !utf8.ValidString(in.Text):
		return &inputError{http.StatusBadRequest, "text is not valid UTF-8"}
	}
	return nil
}

func (h *handler) postMessage(w http.ResponseWriter, r *http.Request) {
	var in MessageIn
	if !decode(w, r, &in, maxBody) {
		return
	}
	if err := validMessage(in); err != nil {
		var ie *inputError
		errors.As(err, &ie)
		writeError(w, ie.code, ie.msg)
		return
	}
	id, dup, err := h.b.Submit(r.Context(), in.ChatID, in.Text, in.ClientID)
	if err != nil {
		h.fail(w, "accept message", err)
		return
	}
	writeJSON(w, http.StatusAccepted, Accepted{ID: id, Duplicate: dup, Paused: h.b.ChatPaused(in.ChatID)})
}

func (h *handler) getMessage(w http.ResponseWriter, r *http.Request) {
	m, err := h.b.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, "get message", err)
		return
	}
	out := Out(m, false)
	if m.State == store.Pending || m.State == store.Inflight {
		if held, why := h.b.ChatHold(m.ChatID); held {
			out.Held = why
		}
		out.Paused = h.b.ChatPaused(m.ChatID)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Status(r.Context())
	if err != nil {
		h.fail(w, "status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) sessions(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Status(r.Context())
	if err != nil {
		h.fail(w, "sessions", err)
		return
	}
	writeJSON(w, http.StatusOK, st.Sessions)
}

func (h *handler) chatOp(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, in ChatRequest) error) {
	var in ChatRequest
	if !decode(w, r, &in, maxCtlBody) {
		return
	}
	if err := ValidChatID(in.ChatID); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := op(r.Context(), in); err != nil {
		h.fail(w, "session operation", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "chat_id": in.ChatID})
}

func (h *handler) kill(w http.ResponseWriter, r *http.Request) {
	h.chatOp(w, r, func(ctx context.Context, in ChatRequest) error { return h.b.Kill(ctx, in.ChatID) })
}

func (h *handler) restart(w http.ResponseWriter, r *http.Request) {
	h.chatOp(w, r, func(ctx context.Context, in ChatRequest) error { return h.b.Restart(ctx, in.ChatID, in.Clean) })
}

func (h *handler) exempt(w http.ResponseWriter, r *http.Request) {
	h.chatOp(w, r, func(ctx context.Context, in ChatRequest) error { return h.b.Exempt(ctx, in.ChatID, !in.Off) })
}

func (h *handler) pause(w http.ResponseWriter, r *http.Request) {
	h.chatOp(w, r, func(ctx context.Context, in ChatRequest) error { return h.b.Pause(ctx, in.ChatID) })
}

func (h *handler) resume(w http.ResponseWriter, r *http.Request) {
	h.chatOp(w, r, func(ctx context.Context, in ChatRequest) error { return h.b.Resume(ctx, in.ChatID) })
}

func (h *handler) idOp(w http.ResponseWriter, r *http.Request, op func(context.Context, string) error) {
	var in IDRequest
	if !decode(w, r, &in, maxCtlBody) {
		return
	}
	if err := validKey("id", in.ID, MaxID); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := op(r.Context(), in.ID); err != nil {
		h.fail(w, "queue operation", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "id": in.ID})
}

func (h *handler) retry(w http.ResponseWriter, r *http.Request) { h.idOp(w, r, h.b.RetryMessage) }
func (h *handler) drop(w http.ResponseWriter, r *http.Request)  { h.idOp(w, r, h.b.DropMessage) }

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	if !h.b.Healthy() {
		writeError(w, http.StatusServiceUnavailable, "the supervisor's loops are not ticking")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.b.Ready(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// fail maps a backend error to a status.
func (h *handler) fail(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, supervisor.ErrUnknownChat):
		writeError(w, http.StatusNotFound, "unknown chat")
	case errors.Is(err, supervisor.ErrOtherNode):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, supervisor.ErrClosing):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict: this chat already has a message with that client_id and another text; nothing was stored")
	case errors.Is(err, store.ErrNoSpace):
		h.log.Error(what, "err", err)
		writeError(w, http.StatusInsufficientStorage, what+": the daemon's disk is full; nothing was stored, try again later")
	case errors.Is(err, store.ErrIO):
		h.log.Error(what, "err", err)
		writeError(w, http.StatusServiceUnavailable, what+": the daemon's database cannot be written; nothing was stored, try again later")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, what+": "+err.Error())
	default:
		// The detail (paths, SQL, internal state) is for the operator's
		// log, not for the client.
		h.log.Error(what, "err", err)
		writeError(w, http.StatusInternalServerError, what+": internal error (the daemon's log has the detail)")
	}
}

// decode reads a JSON body of at most limit bytes into v, answering
// 400/413/415 itself on failure. The body must be declared as
// application/json: a browser's cross-site form post cannot be, so no web
// page can drive the API through a user's browser.
func decode(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON sent with Content-Type: application/json")
		return false
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one value")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// recoverer turns a handler panic into a 500; the daemon keeps serving.
func recoverer(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("api handler panic", "panic", v, "path", r.URL.Path)
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
