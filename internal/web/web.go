// Package web is the status page of `dispatch web`: a small local HTTP
// server that serves one embedded page (HTML, CSS and a little JavaScript)
// and forwards a fixed set of requests to the daemon's control socket.
//
// Access works like a notebook server's: the server is started with a
// random one-time secret, printed in the URL to open. The page's script
// trades it (POST /api/session) for a random session token, keeps that
// token in the tab's sessionStorage and sends it in the Authorization
// header of every request; the secret is spent. Nothing is kept in a
// cookie: a browser sends cookies to every port of a host, and treats two
// ports of 127.0.0.1 as one site, so a cookie would reach any other local
// server the browser visits. A header set by the page's own script is
// usable only by the page's own origin (scheme, host and port), and is
// also what stops a cross-site request forgery. The page's files hold no
// data and are served to anyone; every /api request without the token is
// refused.
//
// Only what the page needs is forwarded — the daemon's status (without the
// webhook section), the dead letters, one message, one chat's recent
// exchanges, the event feed as Server-Sent Events (read by the page with
// fetch, so that it carries the header), the two dead-letter actions, the
// open permission requests and a person's answer to one, the schedules
// and a pause, resume or removal of one — never an arbitrary path. Every answer carries a strict
// Content-Security-Policy (scripts, styles and connections from this
// origin only, no inline script), X-Content-Type-Options: nosniff and
// Referrer-Policy: no-referrer.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

//go:embed assets
var assets embed.FS

// Header names and limits.
const (
	// TokenHeader carries the session token ("Bearer <token>").
	TokenHeader = "Authorization"
	// TailEvents is how many past events a fresh timeline starts with.
	TailEvents = 100
	// ChatExchanges is how many recent replies the chat view shows.
	ChatExchanges = 20
	// clip bounds every text the chat view shows, in bytes.
	clip = 2000
	// upstreamTimeout bounds one forwarded request (not the stream).
	upstreamTimeout = 15 * time.Second
)

// CSP is the Content-Security-Policy of every answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Server is the status page's handler. Create it with New.
type Server struct {
	socket   string
	upstream *http.Client // forwarded requests, with a deadline each
	stream   *http.Client // the event stream, without one
	files    fs.FS

	mu     sync.Mutex
	secret string // "" once spent
	token  string // "" until the secret is spent
}

// New returns a server that forwards to the control socket at socket, with
// a fresh one-time secret (see Secret).
func New(socket string) (*Server, error) {
	secret, err := token()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
	}
	files, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	return &Server{
		socket:   socket,
		upstream: &http.Client{Transport: tr, Timeout: upstreamTimeout},
		stream:   &http.Client{Transport: tr},
		files:    files,
		secret:   secret,
	}, nil
}

// Secret is the one-time secret to put in the URL (?secret=…); "" once it
// has been exchanged for a session token.
func (s *Server) Secret() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secret
}

// URL is the address to open for a server listening on addr.
func URL(addr, secret string) string {
	return "http://" + addr + "/?secret=" + url.QueryEscape(secret)
}

func token() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func equal(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// authorized reports whether r carries the session token in its
// Authorization header.
func (s *Server) authorized(r *http.Request) bool {
	given, ok := strings.CutPrefix(r.Header.Get(TokenHeader), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return equal(given, s.token)
}

// exchange spends the one-time secret and returns the new session token;
// false when given is not the (unspent) secret.
func (s *Server) exchange(given string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !equal(given, s.secret) {
		return "", false
	}
	tok, err := token()
	if err != nil {
		return "", false
	}
	s.secret, s.token = "", tok
	return tok, true
}

func secure(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// ServeHTTP serves the page's files to anyone, the secret exchange to
// whoever has the secret, and the rest only with the session token.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	secure(w.Header())
	if r.Method == http.MethodPost && !s.postAllowed(w, r) {
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /":
		s.asset(w, "index.html", "text/html; charset=utf-8")
		return
	case "GET /app.js":
		s.asset(w, "app.js", "text/javascript; charset=utf-8")
		return
	case "GET /app.css":
		s.asset(w, "app.css", "text/css; charset=utf-8")
		return
	case "GET /favicon.ico":
		w.WriteHeader(http.StatusNoContent)
		return
	case "POST /api/session":
		s.session(w, r)
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, refused)
		return
	}
	s.route(w, r)
}

// refused is the answer to a request without the session token.
const refused = "refused: open the URL that `dispatch web` printed; its secret works once (run it again for a new one)"

// session trades the one-time secret for the session token:
// {"secret": "…"} → {"token": "…"}.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Secret string `json:"secret"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `the body must be {"secret": "…"}`)
		return
	}
	tok, ok := s.exchange(in.Secret)
	if !ok {
		writeError(w, http.StatusUnauthorized, refused)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// postAllowed checks a POST: a same-origin Origin when the browser sends
// one, and a JSON body (a cross-site form cannot send one).
func (s *Server) postAllowed(w http.ResponseWriter, r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		writeError(w, http.StatusForbidden, "refused: cross-origin request")
		return false
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "send application/json")
		return false
	}
	return true
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "GET /api/status":
		s.status(w, r)
	case "GET /api/dead":
		s.forward(w, r, "/v1/queue?state=dead&limit=200")
	case "GET /api/message":
		s.message(w, r)
	case "GET /api/chat":
		s.chat(w, r)
	case "GET /api/events":
		s.events(w, r)
	case "POST /api/retry":
		s.action(w, r, "/v1/queue/retry")
	case "POST /api/drop":
		s.action(w, r, "/v1/queue/drop")
	case "GET /api/permissions":
		s.forward(w, r, "/v1/permissions")
	case "POST /api/permission":
		s.decide(w, r)
	case "GET /api/schedules":
		s.forward(w, r, "/v1/schedules")
	case "POST /api/schedule":
		s.scheduleAction(w, r)
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

func (s *Server) asset(w http.ResponseWriter, name, ctype string) {
	b, err := fs.ReadFile(s.files, name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "missing asset")
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
}

// get sends a GET to the daemon and returns its status and body.
func (s *Server) get(ctx context.Context, path string) (int, []byte, error) {
	return s.send(ctx, http.MethodGet, path, nil)
}

func (s *Server) send(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://dispatch"+path, body)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.upstream.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, data, err
}

func (s *Server) unreachable(w http.ResponseWriter, err error) {
	writeError(w, http.StatusBadGateway, "daemon not reachable: "+err.Error())
}

// forward answers with the daemon's answer to GET path.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, path string) {
	code, body, err := s.get(r.Context(), path)
	if err != nil {
		s.unreachable(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// status forwards the daemon's status without its webhook section (whose
// endpoint URLs may carry credentials).
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	code, body, err := s.get(r.Context(), "/v1/status")
	if err != nil {
		s.unreachable(w, err)
		return
	}
	if code != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		writeError(w, http.StatusBadGateway, "daemon status: "+err.Error())
		return
	}
	out := map[string]json.RawMessage{}
	for _, k := range []string{"daemon", "sessions", "queue"} {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// message forwards one message in full (the dead-letter list clips its
// texts): GET /api/message?id=ID.
func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if !validKey(id) {
		writeError(w, http.StatusBadRequest, "id must be a message id")
		return
	}
	s.forward(w, r, "/v1/queue/"+url.PathEscape(id))
}

// validKey checks an id or chat id from the page before it goes into a
// path or query: printable UTF-8, at most 256 bytes.
func validKey(s string) bool {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// action forwards a retry or drop of one dead letter: {"id": "…"}.
func (s *Server) action(w http.ResponseWriter, r *http.Request, path string) {
	var in struct {
		ID string `json:"id"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || !validKey(in.ID) {
		writeError(w, http.StatusBadRequest, `the body must be {"id": "<message id>"}`)
		return
	}
	body, _ := json.Marshal(in)
	code, resp, err := s.send(r.Context(), http.MethodPost, path, strings.NewReader(string(body)))
	if err != nil {
		s.unreachable(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(resp)
}

// decide forwards a person's answer to a permission request:
// {"id": "…", "decision": "allow"|"allow_always"|"deny"}, recorded as
// decided by "web" (the page). The daemon's 404 and 409 come back as they
// are.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ID       string `json:"id"`
		Decision string `json:"decision"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || !validKey(in.ID) {
		writeError(w, http.StatusBadRequest, `the body must be {"id": "<request id>", "decision": "allow|allow_always|deny"}`)
		return
	}
	switch in.Decision {
	case "allow", "allow_always", "deny":
	default:
		writeError(w, http.StatusBadRequest, "decision must be allow, allow_always or deny")
		return
	}
	body, _ := json.Marshal(map[string]string{"decision": in.Decision, "by": "web"})
	code, resp, err := s.send(r.Context(), http.MethodPost, "/v1/permissions/"+url.PathEscape(in.ID), strings.NewReader(string(body)))
	if err != nil {
		s.unreachable(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(resp)
}

// scheduleAction forwards a pause, resume or removal of one schedule:
// {"id": "…", "action": "pause"|"resume"|"remove"}. The daemon's answer
// (404 for an unknown schedule) comes back as it is.
func (s *Server) scheduleAction(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ID     string `json:"id"`
		Action string `json:"action"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || !validKey(in.ID) {
		writeError(w, http.StatusBadRequest, `the body must be {"id": "<schedule id>", "action": "pause|resume|remove"}`)
		return
	}
	method, path := http.MethodPost, "/v1/schedules/"+url.PathEscape(in.ID)
	switch in.Action {
	case "pause", "resume":
		path += "/" + in.Action
	case "remove":
		method = http.MethodDelete
	default:
		writeError(w, http.StatusBadRequest, "action must be pause, resume or remove")
		return
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	code, resp, err := s.send(r.Context(), method, path, body)
	if err != nil {
		s.unreachable(w, err)
		return
	}
	if code == http.StatusNoContent {
		writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(resp)
}

// Exchange is one turn of a chat as the chat view shows it: the messages
// it answered and its reply (or a dead letter: one message and its error).
type Exchange struct {
	Seq      int64         `json:"seq"`
	At       string        `json:"at"`
	Type     string        `json:"type"`
	TurnID   string        `json:"turn_id,omitempty"`
	Messages []ChatMessage `json:"messages"`
	Reply    string        `json:"reply,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Clipped: the reply or the error was cut at its first 2,000 bytes.
	Clipped bool `json:"clipped,omitempty"`
}

// ChatMessage is one message of the chat view; Text is "" when the
// message is no longer kept.
type ChatMessage struct {
	ID      string `json:"id"`
	Text    string `json:"text"`
	State   string `json:"state,omitempty"`
	Clipped bool   `json:"clipped,omitempty"`
	Gone    bool   `json:"gone,omitempty"`
}

// ChatView is the answer of GET /api/chat?chat=C.
type ChatView struct {
	ChatID    string          `json:"chat_id"`
	Exchanges []Exchange      `json:"exchanges"`
	Waiting   json.RawMessage `json:"waiting"`
}

func clipText(s string) (string, bool) {
	if len(s) <= clip {
		return s, false
	}
	cut := clip
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// chat gathers one chat's last replies and dead letters from the event
// feed, the messages each answered, and the chat's waiting messages.
func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	chat := r.URL.Query().Get("chat")
	if !validKey(chat) {
		writeError(w, http.StatusBadRequest, "chat must be a chat id")
		return
	}
	ctx := r.Context()
	v := url.Values{"chat": {chat}, "tail": {strconv.Itoa(ChatExchanges)}, "types": {"reply,dead_letter"}}
	code, body, err := s.get(ctx, "/v1/events?"+v.Encode())
	if err != nil {
		s.unreachable(w, err)
		return
	}
	if code != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	var feed struct {
		Events []struct {
			Seq        int64    `json:"seq"`
			Type       string   `json:"type"`
			At         string   `json:"at"`
			TurnID     string   `json:"turn_id"`
			MessageIDs []string `json:"message_ids"`
			MessageID  string   `json:"message_id"`
			Text       string   `json:"text"`
			Error      string   `json:"error"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &feed); err != nil {
		writeError(w, http.StatusBadGateway, "daemon events: "+err.Error())
		return
	}
	view := ChatView{ChatID: chat, Exchanges: []Exchange{}}
	for i := len(feed.Events) - 1; i >= 0; i-- { // newest first
		ev := feed.Events[i]
		x := Exchange{Seq: ev.Seq, At: ev.At, Type: ev.Type, TurnID: ev.TurnID, Messages: []ChatMessage{}}
		x.Reply, x.Clipped = clipText(ev.Text)
		var errClipped bool
		x.Error, errClipped = clipText(ev.Error)
		x.Clipped = x.Clipped || errClipped
		ids := ev.MessageIDs
		if ev.MessageID != "" {
			ids = []string{ev.MessageID}
		}
		for _, id := range ids {
			m := ChatMessage{ID: id}
			code, body, err := s.get(ctx, "/v1/queue/"+url.PathEscape(id))
			var got struct {
				Text  string `json:"text"`
				State string `json:"state"`
			}
			if err == nil && code == http.StatusOK && json.Unmarshal(body, &got) == nil {
				m.Text, m.Clipped = clipText(got.Text)
				m.State = got.State
			} else {
				m.Gone = true
			}
			x.Messages = append(x.Messages, m)
		}
		view.Exchanges = append(view.Exchanges, x)
	}
	code, body, err = s.get(ctx, "/v1/queue?"+url.Values{"chat": {chat}, "limit": {"50"}}.Encode())
	if err == nil && code == http.StatusOK {
		var page struct {
			Messages json.RawMessage `json:"messages"`
		}
		if json.Unmarshal(body, &page) == nil {
			view.Waiting = page.Messages
		}
	}
	if view.Waiting == nil {
		view.Waiting = json.RawMessage("[]")
	}
	writeJSON(w, http.StatusOK, view)
}

// events passes the daemon's event stream through. A fresh timeline
// starts with the last TailEvents events; a reconnecting one resumes after
// after= (the page's reconnect) or Last-Event-ID (a plain EventSource
// client's). A position that is no
// longer kept starts over from the tail, after a "gap" event.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	v := url.Values{}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("after")
	}
	if last != "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after must be an event seq")
			return
		}
		v.Set("after", strconv.FormatInt(n, 10))
	} else {
		v.Set("tail", strconv.Itoa(TailEvents))
	}
	resp, err := s.openStream(r.Context(), v)
	if err != nil {
		s.unreachable(w, err)
		return
	}
	gap := false
	if resp.StatusCode == http.StatusGone {
		resp.Body.Close()
		gap = true
		resp, err = s.openStream(r.Context(), url.Values{"tail": {strconv.Itoa(TailEvents)}})
		if err != nil {
			s.unreachable(w, err)
			return
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if gap {
		_, _ = io.WriteString(w, "event: gap\ndata: {}\n\n")
	}
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return // the daemon went away (or the page did): the page reconnects
		}
	}
}

func (s *Server) openStream(ctx context.Context, v url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dispatch/v1/events?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.stream.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.socket, errors.Unwrap(err))
	}
	return resp, nil
}
