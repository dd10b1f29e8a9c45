// Package fakeslack is a fake of Slack's Web API and Socket Mode for tests
// of dispatch's Slack channel, faithful enough that
// github.com/slack-go/slack (slack.OptionAPIURL) and its socketmode package
// work against it.
//
// The fake keeps one workspace in memory: users, channels and direct
// message channels, messages with their threads, reactions, ephemeral
// messages and files. A test plays the person through Go methods (Post,
// Press) or the HTTP control endpoints (ControlHandler), looks at what the
// bot did (Messages, Ops, Ephemerals, Uploads, Acks), and makes Slack
// misbehave: RateLimit answers a method with 429 and Retry-After, Disconnect
// sends a Socket Mode disconnect request, Drop cuts the connection,
// HoldAcks ignores acknowledgements so envelopes are redelivered, and
// SetMode takes the whole service down and brings it back.
//
// What the fake reproduces, from Slack's Web API and Socket Mode
// documentation (api.slack.com) and slack-go's own types:
//   - Web API calls are POST (or GET) /api/<method>, parameters in the
//     query, a form, a multipart form or a JSON body; the token is the
//     Authorization: Bearer header or the token parameter. Answers are
//     HTTP 200 {"ok":true,…} or {"ok":false,"error":"<code>"}: not_authed
//     without a token, invalid_auth with an unknown one,
//     not_allowed_token_type with the wrong kind (the xapp- app token opens
//     Socket Mode connections and nothing else; the xoxb- bot token does
//     everything else). A rate-limited call is HTTP 429 with a Retry-After
//     header (seconds) and {"ok":false,"error":"ratelimited"}.
//   - apps.connections.open returns a ws:// URL of the fake's Socket Mode
//     endpoint, usable once. A connection gets a hello message, WebSocket
//     pings, and envelopes; each envelope is acknowledged by sending back
//     {"envelope_id":…}. An events_api envelope not acknowledged within the
//     acknowledgement timeout is sent again with retry_attempt counting up
//     and retry_reason "timeout", up to three retries.
package fakeslack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/fakeserver"
)

// The default identities and tokens of a server made without options.
const (
	DefaultBotToken = "xoxb-1-fake-bot-token"
	DefaultAppToken = "xapp-1-A0FAKEAPP-1-fake-app-token"
	DefaultTeamID   = "T0FAKE"
	DefaultTeamName = "Fake Team"
	DefaultBotUser  = "U0FAKEBOT"
	DefaultBotID    = "B0FAKEBOT"
	DefaultAppID    = "A0FAKEAPP"
	DefaultBotName  = "dispatch"
)

// Limits the fake enforces, as Slack documents them.
const (
	MaxTextLen        = 40000 // chat.postMessage truncates text beyond this
	MaxSectionTextLen = 3000  // a section block's text
	MaxBlocks         = 50    // blocks in a message
	MaxButtonTextLen  = 75    // a button's label
	MaxActionIDLen    = 255   // an element's action_id
	MaxButtonValueLen = 2000  // a button's value
	MaxUploadSize     = 50 << 20
	maxBody           = MaxUploadSize + 1<<20
)

// Mode says whether the service is up.
type Mode string

// The modes.
const (
	ModeUp     Mode = "up"     // answering
	ModeRefuse Mode = "refuse" // listener closed and every socket dropped: connections are refused
	ModeHang   Mode = "hang"   // Web API requests are read and never answered, until the client gives up or the mode changes
)

// Modes lists every valid mode.
var Modes = []Mode{ModeUp, ModeRefuse, ModeHang}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("fakeslack: unknown mode %q (want up, refuse or hang)", s)
}

// Option configures a Server.
type Option func(*Server)

// WithBotToken sets the xoxb- bot token the API accepts.
func WithBotToken(t string) Option { return func(s *Server) { s.botToken = t } }

// WithAppToken sets the xapp- app-level token apps.connections.open accepts.
func WithAppToken(t string) Option { return func(s *Server) { s.appToken = t } }

// WithTeam sets the workspace's id and name.
func WithTeam(id, name string) Option { return func(s *Server) { s.teamID, s.teamName = id, name } }

// WithBotName sets the bot user's name.
func WithBotName(name string) Option { return func(s *Server) { s.botName = name } }

// WithClock sets the clock of message timestamps, acknowledgement
// timeouts, rate limits and pings.
func WithClock(c clock.Clock) Option { return func(s *Server) { s.clk = c } }

// WithAckTimeout sets how long an events_api envelope may wait for its
// acknowledgement before it is sent again (default 3 s, Slack's).
func WithAckTimeout(d time.Duration) Option { return func(s *Server) { s.ackTimeout = d } }

// WithPingInterval sets how often the fake pings each Socket Mode
// connection (default 10 s; slack-go gives up on a connection that was not
// pinged for 30 s).
func WithPingInterval(d time.Duration) Option { return func(s *Server) { s.pingInterval = d } }

// Server is a fake Slack. Make it with New; all methods are safe for
// concurrent use.
type Server struct {
	life sync.Mutex // serialises listener changes; taken before mu
	ln   fakeserver.Listener

	clk          clock.Clock
	botToken     string
	appToken     string
	teamID       string
	teamName     string
	botName      string
	ackTimeout   time.Duration
	pingInterval time.Duration
	ctl          http.Handler
	upgrader     websocket.Upgrader

	mu       sync.Mutex
	mode     Mode
	revert   fakeserver.Revert // SetModeFor's switch back
	control  bool
	changed  chan struct{} // closed and replaced on every change of state
	closed   bool
	done     chan struct{}
	active   sync.WaitGroup
	hanging  int
	calls    []Call
	limits   []*limit
	failures []*failure

	users     map[string]*User
	userOrder []string
	chans     map[string]*channel
	chanOrder []string
	lastTS    int64 // microseconds of the last timestamp given
	seq       int   // ids of files, events, envelopes, tickets
	files     map[string]*file
	uploads   []Upload
	ephs      []Ephemeral
	subs      map[string]bool

	tickets   map[string]bool
	conns     []*conn
	connSeq   int
	envs      []*envelope // every envelope, in the order made
	acks      []Ack
	holdAcks  bool
	ackTimers sync.WaitGroup
}

// New returns a server that is not yet listening; it serves through Start,
// or as an http.Handler.
func New(opts ...Option) *Server {
	s := &Server{
		clk:          clock.Real{},
		botToken:     DefaultBotToken,
		appToken:     DefaultAppToken,
		teamID:       DefaultTeamID,
		teamName:     DefaultTeamName,
		botName:      DefaultBotName,
		ackTimeout:   3 * time.Second,
		pingInterval: 10 * time.Second,
		mode:         ModeUp,
		changed:      make(chan struct{}),
		done:         make(chan struct{}),
		users:        map[string]*User{},
		chans:        map[string]*channel{},
		files:        map[string]*file{},
		tickets:      map[string]bool{},
		subs:         map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	for _, e := range DefaultSubscriptions {
		s.subs[e] = true
	}
	s.upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	s.addUserLocked(User{ID: DefaultBotUser, Name: s.botName, RealName: s.botName, IsBot: true, BotID: DefaultBotID})
	s.ctl = s.ControlHandler()
	return s
}

// BotToken returns the bot token the API accepts.
func (s *Server) BotToken() string { return s.botToken }

// AppToken returns the app-level token apps.connections.open accepts.
func (s *Server) AppToken() string { return s.appToken }

// TeamID returns the workspace's id.
func (s *Server) TeamID() string { return s.teamID }

// BotUserID returns the bot's user id, the one mentions name (<@U…>).
func (s *Server) BotUserID() string { return DefaultBotUser }

// Start listens on addr, a loopback address such as "127.0.0.1:0", and
// serves in the background. The port is kept for the server's life, so
// leaving ModeRefuse listens on it again.
func (s *Server) Start(addr string) error {
	if err := fakeserver.CheckLoopback(addr); err != nil {
		return fmt.Errorf("fakeslack: %w", err)
	}
	s.life.Lock()
	defer s.life.Unlock()
	if s.ln.Started() {
		return errors.New("fakeslack: already started")
	}
	if s.isClosed() {
		return errors.New("fakeslack: closed")
	}
	if err := s.ln.Start(addr, s); err != nil {
		return fmt.Errorf("fakeslack: %w", err)
	}
	s.applyModeLocked()
	return nil
}

// URL returns the base URL of the server, such as "http://127.0.0.1:41234",
// or "" before Start.
func (s *Server) URL() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.ln.URL()
}

// APIURL returns the Web API URL for slack.OptionAPIURL (the base URL with
// "/api/"), or "" before Start.
func (s *Server) APIURL() string {
	if u := s.URL(); u != "" {
		return u + "/api/"
	}
	return ""
}

// EnableControl serves ControlHandler under ControlPrefix on the API
// listener too.
func (s *Server) EnableControl() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control = true
}

// Mode returns the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode switches the mode: ModeRefuse closes the listener and every open
// connection, Socket Mode ones included; leaving it listens again on the
// same port.
func (s *Server) SetMode(m Mode) { s.switchMode(m, 0, 0, nil) }

// SetModeFor switches to m and back to the previous mode after d, unless
// the mode changes again meanwhile.
func (s *Server) SetModeFor(m Mode, d time.Duration) { s.switchMode(m, d, 0, nil) }

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
	s.notifyLocked()
	s.mu.Unlock()
	if announce == nil {
		announce = func() {}
	}
	if m == ModeRefuse {
		announce()
		s.dropAll()
		s.applyModeLocked()
	} else {
		s.applyModeLocked()
		announce()
	}
}

// applyModeLocked opens or closes the listener to match the mode; s.life
// must be held.
func (s *Server) applyModeLocked() {
	if !s.ln.Started() || s.isClosed() {
		return
	}
	if s.Mode() == ModeRefuse {
		s.ln.Stop()
	} else {
		s.ln.Resume()
	}
}

// Close stops the server, drops every Socket Mode connection and waits for
// every handler to return.
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
	s.notifyLocked()
	s.mu.Unlock()
	s.dropAll()
	err := s.ln.Stop()
	s.life.Unlock()
	s.active.Wait()
	s.ackTimers.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// notifyLocked wakes everything waiting for a change; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor waits until cond, called without locks held, returns true; it is
// called again after every change of the server's state. It returns ctx's
// error if ctx ends first.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeslack: closed", http.StatusServiceUnavailable)
		return
	}
	s.active.Add(1)
	control, mode, changed := s.control, s.mode, s.changed
	s.mu.Unlock()
	defer s.active.Done()

	if control && strings.HasPrefix(r.URL.Path, ControlPrefix) {
		s.ctl.ServeHTTP(w, r)
		return
	}
	if mode == ModeHang {
		s.mu.Lock()
		s.hanging++
		s.notifyLocked()
		changed = s.changed
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.hanging--
			s.notifyLocked()
			s.mu.Unlock()
		}()
	}
	for mode == ModeHang {
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-s.done:
			drop(w)
			return
		}
		s.mu.Lock()
		mode, changed = s.mode, s.changed
		s.mu.Unlock()
	}
	if mode == ModeRefuse { // arrived while the listener is being closed
		drop(w)
		return
	}
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/api/"):
		s.serveAPI(w, r, strings.TrimPrefix(p, "/api/"))
	case p == socketPath:
		s.serveSocket(w, r)
	case strings.HasPrefix(p, uploadPrefix):
		s.serveUpload(w, r, strings.TrimPrefix(p, uploadPrefix))
	case strings.HasPrefix(p, filesPrefix):
		s.serveFile(w, r, strings.TrimPrefix(p, filesPrefix))
	case p == "/" && r.URL.Query().Has("redir"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(signInPage))
	default:
		http.NotFound(w, r)
	}
}

// signInPage is what an unauthenticated file download is redirected to.
const signInPage = "<!DOCTYPE html><html><head><title>Sign in | Slack</title></head><body>Sign in to Fake Team</body></html>\n"

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// apiError is an {"ok":false} answer of the Web API.
type apiError struct {
	status     int // HTTP status, 200 unless rate limited
	code       string
	retryAfter int
	detail     []string // response_metadata.messages
}

func (e *apiError) Error() string { return e.code }

func fail(code string, detail ...string) *apiError {
	return &apiError{status: http.StatusOK, code: code, detail: detail}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Slack writes & < > in its JSON as they are
	b := []byte(`{"ok":false,"error":"fakeslack_marshal_failed"}` + "\n")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
	} else {
		b = buf.Bytes() // ends with a newline, so curl's output does too
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	body := map[string]any{"ok": false, "error": e.code}
	if len(e.detail) > 0 {
		body["response_metadata"] = map[string]any{"messages": e.detail}
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeJSON(w, e.status, body)
}

// Call is one Web API request the server answered.
type Call struct {
	Time   time.Time         `json:"time"`
	Method string            `json:"method"`
	Params map[string]string `json:"params,omitempty"` // token left out
	Status int               `json:"status"`
	Error  string            `json:"error,omitempty"`
}

func (s *Server) record(method string, p params, status int, code string) {
	c := Call{Method: method, Status: status, Error: code}
	if len(p) > 0 {
		c.Params = map[string]string{}
		for k, v := range p {
			if k != "token" {
				c.Params[k] = v
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Time = s.clk.Now()
	s.calls = append(s.calls, c)
	s.notifyLocked()
}

// Calls returns every Web API request answered, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount returns how many requests of method were answered.
func (s *Server) CallCount(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

// Hanging returns how many requests ModeHang is holding.
func (s *Server) Hanging() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hanging
}
