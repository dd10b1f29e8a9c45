// Package faketelegram is a fake of the Telegram Bot API for tests of
// dispatch's Telegram channel, faithful enough that a Bot API client such as
// github.com/go-telegram/bot works against it (bot.WithServerURL).
//
// The fake keeps chats, messages, files and an update queue in memory. A test
// plays the person through Go methods (Send, Press) or the HTTP control
// endpoints (ControlHandler), looks at what the bot sent (Sent, Ops), and
// makes the API misbehave: FailNext answers the next calls of a method with
// an error (429 with parameters.retry_after, say), LimitChat rate-limits
// every call for one chat for a while, and SetMode takes the API down
// (connections refused, requests left unanswered, or 502 Bad Gateway as
// Telegram's front end answers while the Bot API is unavailable) and brings
// it back.
//
// Behaviour of the real API the fake reproduces, from the Bot API
// documentation (core.telegram.org/bots/api):
//   - Requests are /bot<token>/<method> by GET or POST, with parameters in
//     the query string, application/x-www-form-urlencoded,
//     application/json or multipart/form-data (objects and arrays such as
//     reply_markup as JSON text in the form encodings). Method names are
//     not case-sensitive. Answers are {"ok":true,"result":…} or
//     {"ok":false,"error_code":N,"description":"…"}, with "parameters":
//     {"retry_after":S} on 429. A wrong token is 401 "Unauthorized"; an
//     unknown method 404 "Not Found".
//   - getUpdates: an update is confirmed, and never returned again, once
//     getUpdates is called with an offset higher than its update_id; a
//     negative offset keeps only the last -offset updates; limit is 1-100
//     (default 100); with timeout > 0 and nothing pending the call waits up
//     to timeout seconds for an update. allowed_updates, when given, is
//     remembered for later calls and applies to updates created after it.
//     A second getUpdates while one is waiting ends the first with 409
//     "Conflict: terminated by other getUpdates request; make sure that
//     only one bot instance is running".
//   - sendMessage: text is 1-4096 characters after entity parsing; the
//     fake counts UTF-16 code units, the unit of entity offsets, which is
//     never less than the number of characters. Leading and trailing
//     whitespace is removed; an empty text is 400 "Bad Request: message
//     text is empty", a longer one 400 "Bad Request: message is too long".
//     parse_mode HTML is parsed as ParseHTML describes; a refusal is 400
//     "Bad Request: can't parse entities: …". Other parse modes are refused
//     by the fake. A bot can write only to chats it has seen (else 400
//     "Bad Request: chat not found").
//   - editMessageText and editMessageReplyMarkup change a bot's message; the
//     same content and keyboard is 400 "Bad Request: message is not
//     modified: …". Editing the text without reply_markup removes the
//     inline keyboard.
//   - Inline keyboard callback_data is 1-64 bytes (else 400 "Bad Request:
//     BUTTON_DATA_INVALID"). answerCallbackQuery takes a query once.
//   - Files: getFile returns a file_path for files up to 20 MB (else
//     "Bad Request: file is too big"), downloadable at
//     /file/bot<token>/<file_path>. sendDocument takes a multipart upload
//     or the file_id of a known file; captions are 0-1024 characters.
//
// Group chats deliver every message to the bot, as with privacy mode
// disabled (getMe says can_read_all_group_messages); the bot has to decide
// itself whether it was addressed.
package faketelegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/fakeserver"
)

// DefaultToken is the bot token of a server made without WithToken.
const DefaultToken = "123456:fake-telegram-token"

// MaxTextLen is the longest message text, in UTF-16 code units after entity
// parsing; MaxCaptionLen the longest caption.
const (
	MaxTextLen       = 4096
	MaxCaptionLen    = 1024
	MaxDownloadSize  = 20 << 20 // getFile refuses larger files
	MaxUploadSize    = 50 << 20 // sendDocument refuses larger uploads
	maxCallbackData  = 64
	maxBody          = MaxUploadSize + 1<<20
	defaultPollLimit = 100
)

// Mode says whether the API is up.
type Mode string

// The modes.
const (
	ModeUp     Mode = "up"     // answering
	ModeRefuse Mode = "refuse" // listener closed: connections are refused
	Mode502    Mode = "502"    // every request answered 502 Bad Gateway with an HTML page
	ModeHang   Mode = "hang"   // requests are read and never answered, until the client gives up or the mode changes
)

// Modes lists every valid mode.
var Modes = []Mode{ModeUp, ModeRefuse, Mode502, ModeHang}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("faketelegram: unknown mode %q (want up, refuse, 502 or hang)", s)
}

// Option configures a Server.
type Option func(*Server)

// WithToken sets the bot token the API accepts.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithBot sets the bot user getMe returns; its ID should match the token's
// leading number.
func WithBot(u User) Option { return func(s *Server) { s.bot = u } }

// WithUsername sets the bot's username (default fake_dispatch_bot).
func WithUsername(name string) Option { return func(s *Server) { s.username = name } }

// WithClock sets the clock of message dates, long-poll timeouts and chat
// rate limits.
func WithClock(c clock.Clock) Option { return func(s *Server) { s.clk = c } }

// WithFirstUpdateID sets the update_id of the first update (default 1).
func WithFirstUpdateID(id int64) Option { return func(s *Server) { s.nextUpdateID = id } }

// Server is a fake Telegram Bot API. Make it with New; all methods are safe
// for concurrent use.
type Server struct {
	// life serialises listener changes; taken before mu, never after.
	life sync.Mutex
	ln   fakeserver.Listener

	clk      clock.Clock
	token    string
	bot      User
	username string
	ctl      http.Handler

	mu           sync.Mutex
	mode         Mode
	revert       fakeserver.Revert // SetModeFor's switch back
	control      bool
	changed      chan struct{} // closed and replaced on every change of state
	updates      []Update      // not yet confirmed, in update_id order
	nextUpdateID int64
	allowed      map[string]bool // nil: every kind
	poller       *poller         // the getUpdates waiting, if any
	chats        map[int64]*chat
	chatOrder    []int64
	files        map[string]*storedFile
	fileSeq      int
	queries      map[string]*query
	querySeq     int
	commands     map[string][]BotCommand
	faults       []*fault
	limits       map[int64]time.Time
	calls        []Call
	hanging      int  // requests held by ModeHang
	holdFiles    bool // file downloads stop half way (HoldFiles)
	filesHeld    int  // downloads stopped half way
	closed       bool
	done         chan struct{}
	active       sync.WaitGroup
}

type poller struct{ conflict chan struct{} }

// New returns a server that is not yet listening; it serves through Start,
// or as an http.Handler.
func New(opts ...Option) *Server {
	s := &Server{
		clk:          clock.Real{},
		token:        DefaultToken,
		mode:         ModeUp,
		changed:      make(chan struct{}),
		nextUpdateID: 1,
		chats:        map[int64]*chat{},
		files:        map[string]*storedFile{},
		queries:      map[string]*query{},
		commands:     map[string][]BotCommand{},
		limits:       map[int64]time.Time{},
		done:         make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.bot.ID == 0 {
		id, _ := strconv.ParseInt(strings.SplitN(s.token, ":", 2)[0], 10, 64)
		s.bot = User{ID: id, IsBot: true, FirstName: "Fake Bot", Username: "fake_dispatch_bot"}
	}
	if s.username != "" {
		s.bot.Username = s.username
	}
	s.bot.IsBot = true
	s.bot.CanJoinGroups = true
	s.bot.CanReadAllGroupMessages = true
	s.ctl = s.ControlHandler()
	return s
}

// Token returns the bot token the API accepts.
func (s *Server) Token() string { return s.token }

// Bot returns the bot user.
func (s *Server) Bot() User { return s.bot }

// Start listens on addr, a loopback address such as "127.0.0.1:0", and
// serves in the background. The port is kept for the server's life, so
// leaving ModeRefuse listens on it again.
func (s *Server) Start(addr string) error {
	if err := fakeserver.CheckLoopback(addr); err != nil {
		return fmt.Errorf("faketelegram: %w", err)
	}
	s.life.Lock()
	defer s.life.Unlock()
	if s.ln.Started() {
		return errors.New("faketelegram: already started")
	}
	if s.isClosed() {
		return errors.New("faketelegram: closed")
	}
	if err := s.ln.Start(addr, s); err != nil {
		return fmt.Errorf("faketelegram: %w", err)
	}
	s.applyModeLocked()
	return nil
}

// URL returns the base URL for bot.WithServerURL, such as
// "http://127.0.0.1:41234", or "" before Start.
func (s *Server) URL() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.ln.URL()
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
// connection, leaving it listens again on the same port.
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

// Close stops the server, ends waiting long polls and waits for every
// handler to return.
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

// apiError is an error answer of the API.
type apiError struct {
	code       int
	desc       string
	retryAfter int
}

func (e *apiError) Error() string { return e.desc }

func badRequest(format string, args ...any) *apiError {
	return &apiError{code: http.StatusBadRequest, desc: "Bad Request: " + fmt.Sprintf(format, args...)}
}

type response struct {
	OK          bool                `json:"ok"`
	Result      any                 `json:"result,omitempty"`
	ErrorCode   int                 `json:"error_code,omitempty"`
	Description string              `json:"description,omitempty"`
	Parameters  *ResponseParameters `json:"parameters,omitempty"`
}

func writeResult(w http.ResponseWriter, result any) {
	writeJSON(w, http.StatusOK, response{OK: true, Result: result})
}

func writeError(w http.ResponseWriter, e *apiError) {
	r := response{ErrorCode: e.code, Description: e.desc}
	if e.retryAfter > 0 {
		r.Parameters = &ResponseParameters{RetryAfter: e.retryAfter}
	}
	writeJSON(w, e.code, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"ok":false,"error_code":500,"description":"faketelegram: marshal failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// badGatewayPage is what Telegram's front end answers while the Bot API
// behind it is unavailable.
const badGatewayPage = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "faketelegram: closed", http.StatusServiceUnavailable)
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
			drop(w) // returning would send an empty 200
			return
		}
		s.mu.Lock()
		mode, changed = s.mode, s.changed
		s.mu.Unlock()
	}
	switch mode {
	case Mode502:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte(badGatewayPage))
		return
	case ModeRefuse: // arrived while the listener is being closed
		drop(w)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/file/bot"); ok {
		s.serveFile(r.Context(), w, rest)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	if !ok {
		writeError(w, &apiError{code: http.StatusNotFound, desc: "Not Found"})
		return
	}
	token, method, _ := strings.Cut(rest, "/")
	if token != s.token {
		writeError(w, &apiError{code: http.StatusUnauthorized, desc: "Unauthorized"})
		return
	}
	method = strings.TrimPrefix(method, "test/")
	h, ok := s.methods()[strings.ToLower(method)]
	if !ok {
		s.record(method, nil, http.StatusNotFound, "Not Found")
		writeError(w, &apiError{code: http.StatusNotFound, desc: "Not Found"})
		return
	}
	p, perr := readParams(r)
	if perr != nil {
		s.record(method, nil, perr.code, perr.desc)
		writeError(w, perr)
		return
	}
	if e := s.injected(method, p); e != nil {
		s.record(method, p, e.code, e.desc)
		writeError(w, e)
		return
	}
	result, e := h(r.Context(), p)
	if e != nil {
		s.record(method, p, e.code, e.desc)
		writeError(w, e)
		return
	}
	s.record(method, p, http.StatusOK, "")
	writeResult(w, result)
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler) // not hijackable (HTTP/2): abort the stream instead
}

// Call is one API request the server answered.
type Call struct {
	Time   time.Time         `json:"time"`
	Method string            `json:"method"`
	Params map[string]string `json:"params,omitempty"` // uploads as "<file NAME, N bytes>"
	Status int               `json:"status"`
	Error  string            `json:"error,omitempty"`
}

func (s *Server) record(method string, p *params, status int, desc string) {
	c := Call{Method: method, Status: status, Error: desc}
	if p != nil {
		c.Params = p.summary()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.Time = s.clk.Now()
	s.calls = append(s.calls, c)
	s.notifyLocked()
}

// Calls returns every API request answered, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount returns how many requests of method (any case) were answered.
func (s *Server) CallCount(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if strings.EqualFold(c.Method, method) {
			n++
		}
	}
	return n
}
