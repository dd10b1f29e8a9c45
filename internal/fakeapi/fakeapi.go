// Package fakeapi is a fake of the Anthropic Messages API for end-to-end
// tests of the real Claude Code CLI (pointed at it with ANTHROPIC_BASE_URL).
//
// It answers POST /v1/messages with a canned text reply, streamed (SSE) or as
// one JSON message, or on command with tool_use blocks (a TOOL_USE line in
// the prompt, QueueToolUse) whose results it then answers with text naming
// each tool's outcome; and it can be switched at run time into failure modes (HTTP
// errors, refused connections, hangs, slow or cut streams) so callers can test
// how they handle a misbehaving API. Every request is recorded. The server
// listens on loopback only and never talks to the real API.
package fakeapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeserver"
)

// Mode selects how the server answers POST /v1/messages.
type Mode string

// The modes. Error modes answer with the status and error body the real API
// uses for that failure.
const (
	ModeOK        Mode = "ok"           // normal reply
	ModeRefuse    Mode = "refuse"       // listener closed: connections are refused
	Mode500       Mode = "500"          // 500 api_error
	Mode529       Mode = "529"          // 529 overloaded_error
	Mode429       Mode = "429"          // 429 rate_limit_error, retry-after: 0
	Mode401       Mode = "401"          // 401 authentication_error
	ModeTooLong   Mode = "400_too_long" // 400 invalid_request_error: prompt is too long
	ModeHang      Mode = "hang"         // never answer until the client goes away or Close
	ModeSlow      Mode = "slow"         // wait SetSlow, then answer normally
	ModeCutStream Mode = "cut_stream"   // send message_start and one delta, then drop the connection
)

// Modes lists every valid mode.
var Modes = []Mode{ModeOK, ModeRefuse, Mode500, Mode529, Mode429, Mode401, ModeTooLong, ModeHang, ModeSlow, ModeCutStream}

// ParseMode returns the Mode named s, or an error naming the valid ones.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("fakeapi: unknown mode %q (want one of %s)", s, strings.Join(names, ", "))
}

// modeError is the canned error answer of an error mode.
type modeError struct {
	status  int
	errType string
	message string
}

var modeErrors = map[Mode]modeError{
	Mode500:     {500, "api_error", "Internal server error"},
	Mode529:     {529, "overloaded_error", "Overloaded"},
	Mode429:     {429, "rate_limit_error", "This request would exceed the rate limit for your organization. Please retry later."},
	Mode401:     {401, "authentication_error", "invalid x-api-key"},
	ModeTooLong: {400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"},
}

// Recorded is one request the server received.
type Recorded struct {
	Time   time.Time   `json:"time"`
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Query  string      `json:"query,omitempty"`
	Header http.Header `json:"header,omitempty"` // x-api-key and authorization are redacted
	Body   string      `json:"body,omitempty"`   // raw body as received
	// Request is the parsed body of a POST /v1/messages; nil for other
	// requests and for bodies that are not valid JSON.
	Request *MessagesRequest `json:"request,omitempty"`
	Mode    Mode             `json:"mode"` // mode in force when the request arrived
}

// maxBody bounds a request body; Claude Code's prompts with tool schemas are
// a few hundred KiB.
const maxBody = 32 << 20

// DefaultSlow is the delay of ModeSlow until SetSlow changes it.
const DefaultSlow = 2 * time.Second

// Server is a fake Anthropic API server. The zero value is not usable; call
// New. All methods are safe for concurrent use.
type Server struct {
	// life serialises listener changes: Start, mode switches to and from
	// ModeRefuse, and Close. It is taken before mu, never after.
	life sync.Mutex
	ln   fakeserver.Listener

	mu        sync.Mutex
	mode      Mode
	revert    fakeserver.Revert // SetModeFor's switch back
	slow      time.Duration
	reply     func(MessagesRequest) string
	control   bool
	ctl       http.Handler // ControlHandler, built once
	toolQueue [][]ToolUse  // QueueToolUse: tool calls of the next answers
	requests  []Recorded   // POST /v1/messages only
	all       []Recorded   // every request except /_control/
	seq       int
	err       error // last failure to listen again after ModeRefuse
	closed    bool
	done      chan struct{} // closed by Close; releases hanging and slow handlers
	active    sync.WaitGroup
}

// New returns a server in ModeOK that is not yet listening.
func New() *Server {
	s := &Server{mode: ModeOK, slow: DefaultSlow, reply: DefaultReply, done: make(chan struct{})}
	s.ctl = s.ControlHandler()
	return s
}

// Start listens on addr, which must be a loopback address such as
// "127.0.0.1:0", and serves in the background. The port chosen is kept for
// the life of the server so that leaving ModeRefuse listens on it again.
// If the mode is already ModeRefuse the port is reserved and released at once.
func (s *Server) Start(addr string) error {
	if err := fakeserver.CheckLoopback(addr); err != nil {
		return fmt.Errorf("fakeapi: %w", err)
	}
	s.life.Lock()
	defer s.life.Unlock()
	if s.ln.Started() {
		return errors.New("fakeapi: already started")
	}
	if s.isClosed() {
		return errors.New("fakeapi: closed")
	}
	if err := s.ln.Start(addr, s); err != nil {
		return fmt.Errorf("fakeapi: %w", err)
	}
	s.applyModeLocked()
	return nil
}

// URL returns the base URL to put in ANTHROPIC_BASE_URL, such as
// "http://127.0.0.1:41234", or "" before Start.
func (s *Server) URL() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.ln.URL()
}

// Mode returns the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode switches the mode. Switching to ModeRefuse closes the listener and
// every open connection; switching away listens again on the same port. If
// that fails the server keeps refusing and Err reports why. Modes not in
// Modes answer 500 with a message naming the bad mode.
func (s *Server) SetMode(m Mode) {
	s.switchMode(m, 0, 0, nil)
}

// SetModeFor switches to m and back to the previous mode after d, unless
// the mode is changed again meanwhile. It lets a client of the control
// endpoint, which shares the refused listener, leave ModeRefuse again.
func (s *Server) SetModeFor(m Mode, d time.Duration) {
	s.switchMode(m, d, 0, nil)
}

// switchMode sets the mode to m, arms a revert after revertAfter if it is
// positive, and opens or closes the listener to match. It calls announce,
// if not nil, while the listener is up: before closing it for ModeRefuse,
// after opening it otherwise, so a control client's answer is never lost
// and never early. With onlyIfGen non-zero it does nothing if the mode
// changed since that generation: a pending revert loses to a newer switch.
func (s *Server) switchMode(m Mode, revertAfter time.Duration, onlyIfGen uint64, announce func()) {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	if !s.revert.Change(onlyIfGen) {
		s.mu.Unlock()
		return
	}
	prev := s.mode
	s.mode = m
	if !s.closed {
		s.revert.After(revertAfter, func(gen uint64) { s.switchMode(prev, 0, gen, nil) })
	}
	s.mu.Unlock()
	if announce == nil {
		announce = func() {}
	}
	if m == ModeRefuse {
		announce()
		s.applyModeLocked()
	} else {
		s.applyModeLocked()
		announce()
	}
}

// applyModeLocked makes the listener match the mode: closed in ModeRefuse,
// open otherwise. s.life must be held.
func (s *Server) applyModeLocked() {
	if !s.ln.Started() || s.isClosed() {
		return
	}
	if s.Mode() == ModeRefuse {
		s.ln.Stop()
	} else if !s.ln.Listening() {
		err := s.ln.Resume()
		if err != nil {
			err = fmt.Errorf("fakeapi: %w", err)
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}
}

// Err reports why the server could not listen again when it last left
// ModeRefuse, or nil.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// SetSlow sets how long ModeSlow waits before answering.
func (s *Server) SetSlow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// SetReply installs the function that makes the reply text; nil restores
// DefaultReply. It is called without locks held and may block.
func (s *Server) SetReply(f func(req MessagesRequest) string) {
	if f == nil {
		f = DefaultReply
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// EnableControl serves ControlHandler under /_control/ on the API listener
// itself, for processes that cannot call the Go API.
func (s *Server) EnableControl() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control = true
}

// Requests returns a copy of every POST /v1/messages received, in order.
// The copies share headers and parsed requests with the server: treat them
// as read-only.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.requests...)
}

// AllRequests returns a copy of every request received on any path except
// /_control/, in order; useful to see what else a client calls.
func (s *Server) AllRequests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.all...)
}

// Close stops the server, drops every connection, releases hanging
// requests and waits until all handlers have returned.
func (s *Server) Close() error {
	s.life.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.life.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.revert.Stop()
	s.mu.Unlock()
	err := s.ln.Stop()
	s.life.Unlock()
	s.active.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeHTTP implements http.Handler. It is exported so a test may also mount
// the fake in its own server, where ModeRefuse can only drop connections.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeapi: closed", http.StatusServiceUnavailable)
		return
	}
	s.active.Add(1) // under mu with closed false, so Close's Wait sees it
	control := s.control
	s.mu.Unlock()
	defer s.active.Done()

	if control && strings.HasPrefix(r.URL.Path, ControlPrefix) {
		s.ctl.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return // client went away
	}
	rec := Recorded{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: redact(r.Header),
		Body:   string(body),
	}
	isMessages := r.Method == http.MethodPost && r.URL.Path == "/v1/messages"
	var parseErr error
	if isMessages {
		var req MessagesRequest
		if parseErr = json.Unmarshal(body, &req); parseErr == nil {
			rec.Request = &req
		}
	}
	s.mu.Lock()
	s.seq++
	requestID := fmt.Sprintf("req_fake_%06d", s.seq)
	msgID := fmt.Sprintf("msg_fake_%06d", s.seq)
	rec.Time = time.Now()
	rec.Mode = s.mode
	s.all = append(s.all, rec)
	if isMessages {
		s.requests = append(s.requests, rec)
	}
	mode, slow, reply := s.mode, s.slow, s.reply
	s.mu.Unlock()

	w.Header().Set("request-id", requestID)
	if !isMessages {
		// Everything else the CLI may call (count_tokens, /api/..., models,
		// HEAD probes) gets an empty success so it never blocks a test.
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	if parseErr != nil {
		writeJSON(w, http.StatusBadRequest, newErrorBody("invalid_request_error", "fakeapi: bad JSON body: "+parseErr.Error(), requestID))
		return
	}
	if e, ok := modeErrors[mode]; ok {
		if mode == Mode429 {
			w.Header().Set("retry-after", "0")
		}
		writeJSON(w, e.status, newErrorBody(e.errType, e.message, requestID))
		return
	}
	switch mode {
	case ModeOK, ModeCutStream:
	case ModeRefuse: // arrived while the listener is being closed
		drop(w)
		return
	case ModeHang:
		select {
		case <-r.Context().Done():
		case <-s.done:
			drop(w) // returning would send an empty 200
		}
		return
	case ModeSlow:
		t := time.NewTimer(slow)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			drop(w)
			return
		}
	default:
		writeJSON(w, http.StatusInternalServerError, newErrorBody("api_error", fmt.Sprintf("fakeapi: unknown mode %q", mode), requestID))
		return
	}
	out, err := s.decide(*rec.Request, reply)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, newErrorBody("invalid_request_error", err.Error(), requestID))
		return
	}
	answer(w, *rec.Request, msgID, out, len(body), mode == ModeCutStream)
}

// answer writes a successful reply: SSE when the request asked to stream,
// else one JSON message. With cut set it sends only the start of the reply
// and then drops the connection, like a network failure mid-answer. A
// reply with tool calls has one tool_use block each (ids toolu_<msgID>_<n>)
// and stop_reason tool_use.
func answer(w http.ResponseWriter, req MessagesRequest, msgID string, out output, bodyLen int, cut bool) {
	model := req.Model
	if model == "" {
		model = "claude-fake"
	}
	stop := "end_turn"
	content := []any{textBlock{Type: "text", Text: out.text}}
	words := len(strings.Fields(out.text))
	if len(out.tools) > 0 {
		stop = "tool_use"
		content = content[:0]
		for i, t := range out.tools {
			id := fmt.Sprintf("toolu_%s_%d", strings.TrimPrefix(msgID, "msg_"), i+1)
			content = append(content, toolUseBlock{Type: "tool_use", ID: id, Name: t.Name, Input: t.Input})
			words += len(t.Input) / 4
		}
	}
	msg := message{
		ID:         msgID,
		Type:       "message",
		Role:       "assistant",
		Model:      model,
		Content:    content,
		StopReason: &stop,
		Usage: usage{
			InputTokens:  1 + bodyLen/4, // rough: about four bytes a token
			OutputTokens: 1 + words,
			ServiceTier:  "standard",
		},
	}
	if !req.Stream {
		b, _ := json.Marshal(msg)
		if cut {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.WriteHeader(http.StatusOK)
			w.Write(b[:len(b)/2])
			drop(w)
			return
		}
		writeJSON(w, http.StatusOK, msg)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for i, ev := range streamEvents(msg) {
		if cut && i == 3 { // after message_start, content_block_start and one delta
			drop(w)
			return
		}
		data, _ := json.Marshal(ev.data)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, data); err != nil {
			return
		}
		if http.NewResponseController(w).Flush() != nil {
			return
		}
	}
}

// drop flushes what was written and closes the connection without ending
// the response, so the client sees a truncated body or no answer at all.
func drop(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler) // not hijackable (HTTP/2): abort the stream instead
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"type":"error","error":{"type":"api_error","message":"fakeapi: marshal failed"}}`)
	}
	// An explicit length lets a flushed response count as complete even if
	// the connection is closed right after (a switch to ModeRefuse).
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// redact copies h without credentials, so recorded requests can be printed.
func redact(h http.Header) http.Header {
	h = h.Clone()
	for _, k := range []string{"X-Api-Key", "Authorization"} {
		if h.Get(k) != "" {
			h.Set(k, "REDACTED")
		}
	}
	return h
}
