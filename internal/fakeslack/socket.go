package fakeslack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const socketPath = "/link/"

// MaxRetries is how many times an unacknowledged events_api envelope is
// sent again before the fake gives up on it.
const MaxRetries = 3

// The kinds of Socket Mode envelopes.
const (
	EnvelopeEventsAPI   = "events_api"
	EnvelopeInteractive = "interactive"
)

// The reasons of a disconnect request.
const (
	ReasonWarning          = "warning"           // the connection will be refreshed soon
	ReasonRefreshRequested = "refresh_requested" // reconnect now
	ReasonLinkDisabled     = "link_disabled"     // Socket Mode was turned off for the app
)

type conn struct {
	id   int
	ws   *websocket.Conn
	wmu  sync.Mutex // one writer at a time
	done chan struct{}
	once sync.Once
}

func (c *conn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// kill closes the TCP connection without a close frame.
func (c *conn) kill() {
	c.once.Do(func() {
		close(c.done)
		c.ws.NetConn().Close()
	})
}

// Envelope is a Socket Mode envelope the fake made, and what became of it.
type Envelope struct {
	ID           string          `json:"envelope_id"`
	Type         string          `json:"type"` // events_api or interactive
	EventID      string          `json:"event_id,omitempty"`
	Payload      json.RawMessage `json:"payload"`
	RetryAttempt int             `json:"retry_attempt"`     // of the latest delivery
	Deliveries   int             `json:"deliveries"`        // times written to a connection
	Acked        bool            `json:"acked"`             // an acknowledgement was accepted
	GaveUp       bool            `json:"gave_up,omitempty"` // not acknowledged after every retry (or, interactive, in time)
	ackCh        chan struct{}   // closed when acknowledged
	sentOn       int             // connection id of the latest delivery; 0 while waiting for one
	pendingRetry bool            // the next delivery is a retry after a timeout
}

type envelope = Envelope

// Ack is an acknowledgement the fake received.
type Ack struct {
	Time       time.Time       `json:"time"`
	EnvelopeID string          `json:"envelope_id"`
	Conn       int             `json:"conn"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Held       bool            `json:"held,omitempty"`    // ignored: HoldAcks was on
	Unknown    bool            `json:"unknown,omitempty"` // no such envelope, or already acknowledged
}

func (s *Server) connectionsOpen(params) (map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.nextIDLocked("fake-ticket-")
	s.tickets[t] = true
	u := "ws" + s.URL()[len("http"):] + socketPath + "?ticket=" + t + "&app_id=" + DefaultAppID
	return map[string]any{"url": u}, nil
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	t := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.tickets[t]
	delete(s.tickets, t)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed || s.mode == ModeRefuse {
		s.mu.Unlock()
		ws.NetConn().Close()
		return
	}
	s.connSeq++
	c := &conn{id: s.connSeq, ws: ws, done: make(chan struct{})}
	s.conns = append(s.conns, c)
	hello := map[string]any{
		"type": "hello", "num_connections": len(s.conns),
		"debug_info":      map[string]any{"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": DefaultAppID},
	}
	s.notifyLocked()
	s.mu.Unlock()

	defer func() {
		c.kill()
		s.mu.Lock()
		s.conns = slices.DeleteFunc(s.conns, func(x *conn) bool { return x == c })
		s.notifyLocked()
		s.mu.Unlock()
	}()
	if c.write(hello) != nil {
		return
	}
	s.active.Add(1)
	go func() { defer s.active.Done(); s.ping(c) }()

	// Envelopes waiting for a connection go out on this one.
	s.mu.Lock()
	var waiting []*envelope
	for _, e := range s.envs {
		if !e.Acked && !e.GaveUp && e.sentOn == 0 {
			e.sentOn = c.id
			waiting = append(waiting, e)
		}
	}
	s.mu.Unlock()
	for _, e := range waiting {
		s.send(c, e)
	}

	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var a struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(msg, &a) != nil || a.EnvelopeID == "" {
			continue
		}
		s.ack(c, a.EnvelopeID, a.Payload)
	}
}

func (s *Server) ping(c *conn) {
	for {
		t := s.clk.NewTimer(s.pingInterval)
		select {
		case <-t.C():
		case <-c.done:
			t.Stop()
			return
		}
		if c.ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(10*time.Second)) != nil {
			return
		}
	}
}

func (s *Server) ack(c *conn, id string, payload json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Ack{Time: s.clk.Now(), EnvelopeID: id, Conn: c.id, Payload: payload, Held: s.holdAcks}
	var env *envelope
	for _, e := range s.envs {
		if e.ID == id {
			env = e
		}
	}
	switch {
	case env == nil || env.Acked:
		a.Unknown = true
	case !a.Held:
		env.Acked = true
		close(env.ackCh)
	}
	s.acks = append(s.acks, a)
	s.notifyLocked()
}

// enqueueLocked makes an envelope of payload and sends it on the newest
// connection, or keeps it until one opens; s.mu must be held.
func (s *Server) enqueueLocked(typ, eventID string, payload any) *envelope {
	e := &envelope{ID: s.nextIDLocked("fake-env-"), Type: typ, EventID: eventID, Payload: mustJSON(payload), ackCh: make(chan struct{})}
	s.envs = append(s.envs, e)
	s.notifyLocked()
	if c := s.liveConnLocked(); c != nil && !s.closed {
		e.sentOn = c.id
		s.ackTimers.Add(1)
		go func() { // not under s.mu: a write may block
			defer s.ackTimers.Done()
			s.send(c, e)
		}()
	}
	return e
}

// send writes e on c and, for events_api, starts its acknowledgement
// clock. A write that fails did not deliver: e waits for the next live
// connection instead.
func (s *Server) send(c *conn, e *envelope) {
	s.mu.Lock()
	if e.Acked || e.GaveUp || s.closed {
		s.mu.Unlock()
		return
	}
	attempt := e.RetryAttempt
	if e.pendingRetry {
		attempt++
	}
	msg := map[string]any{"envelope_id": e.ID, "type": e.Type, "payload": e.Payload, "accepts_response_payload": false}
	if e.Type == EnvelopeEventsAPI {
		msg["retry_attempt"] = attempt
		msg["retry_reason"] = ""
		if attempt > 0 {
			msg["retry_reason"] = "timeout"
		}
	}
	// Counted before the write, so an acknowledgement never finds an
	// envelope not yet delivered; a write that fails is taken back.
	prevAttempt, prevRetry := e.RetryAttempt, e.pendingRetry
	e.RetryAttempt, e.pendingRetry = attempt, false
	e.Deliveries++
	d := e.Deliveries
	s.notifyLocked()
	s.mu.Unlock()
	err := c.write(msg)
	if err != nil {
		c.kill()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if err != nil {
		if e.Deliveries == d {
			e.Deliveries--
			e.RetryAttempt, e.pendingRetry = prevAttempt, prevRetry
		}
		if e.sentOn == c.id && !e.Acked && !e.GaveUp {
			e.sentOn = 0
			if next := s.liveConnLocked(); next != nil {
				e.sentOn = next.id
				s.ackTimers.Add(1)
				go func() {
					defer s.ackTimers.Done()
					s.send(next, e)
				}()
			}
		}
		return
	}
	if e.Acked || e.GaveUp {
		return
	}
	s.ackTimers.Add(1)
	go func() {
		defer s.ackTimers.Done()
		s.awaitAck(e, d)
	}()
}

// liveConnLocked returns the newest connection not yet cut, or nil; s.mu
// must be held.
func (s *Server) liveConnLocked() *conn {
	for i := len(s.conns) - 1; i >= 0; i-- {
		select {
		case <-s.conns[i].done:
		default:
			return s.conns[i]
		}
	}
	return nil
}

// awaitAck waits for e's acknowledgement of delivery attempt; when the
// timeout passes first, an events_api envelope is sent again (on the newest
// connection, or the next to open) and an interactive one is given up.
func (s *Server) awaitAck(e *envelope, attempt int) {
	t := s.clk.NewTimer(s.ackTimeout)
	defer t.Stop()
	select {
	case <-e.ackCh:
		return
	case <-s.done:
		return
	case <-t.C():
	}
	s.mu.Lock()
	if e.Acked || e.GaveUp || e.Deliveries != attempt {
		s.mu.Unlock()
		return
	}
	if e.Type != EnvelopeEventsAPI || e.RetryAttempt >= MaxRetries {
		e.GaveUp = true
		s.notifyLocked()
		s.mu.Unlock()
		return
	}
	e.pendingRetry = true
	e.sentOn = 0
	c := s.liveConnLocked()
	if c != nil {
		e.sentOn = c.id
	}
	s.notifyLocked()
	s.mu.Unlock()
	if c != nil {
		s.send(c, e)
	}
}

// Disconnect sends every open connection a disconnect request with reason
// (ReasonWarning, ReasonRefreshRequested, ReasonLinkDisabled) and returns
// how many got it. The fake leaves the socket open, as the client is
// expected to close it and connect again; Drop cuts it.
func (s *Server) Disconnect(reason string) int {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.write(map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "applink-fake"}}) == nil {
			n++
		}
	}
	return n
}

// Drop closes every Socket Mode connection's TCP connection, without a
// close frame, and returns how many there were.
func (s *Server) Drop() int { return s.dropAll() }

func (s *Server) dropAll() int {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
	return len(conns)
}

// HoldAcks makes the fake ignore acknowledgements while on (they are still
// recorded, as Held), so envelopes time out and are sent again.
func (s *Server) HoldAcks(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdAcks = on
	s.notifyLocked()
}

// Connections returns how many Socket Mode connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Envelopes returns every envelope made, in order.
func (s *Server) Envelopes() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Envelope, len(s.envs))
	for i, e := range s.envs {
		out[i] = *e
		out[i].ackCh = nil
	}
	return out
}

// Envelope returns one envelope by id.
func (s *Server) Envelope(id string) (Envelope, bool) {
	for _, e := range s.Envelopes() {
		if e.ID == id {
			return e, true
		}
	}
	return Envelope{}, false
}

// Acks returns every acknowledgement received, in order.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks)
}

// eventLocked wraps an inner event in an event_callback and queues it;
// s.mu must be held.
func (s *Server) eventLocked(inner map[string]any) *envelope {
	now := s.clk.Now()
	id := s.nextIDLocked("Ev0FAKE")
	payload := map[string]any{
		"token": "fake-verification-token", "team_id": s.teamID, "api_app_id": DefaultAppID,
		"event": inner, "type": "event_callback", "event_id": id, "event_time": now.Unix(),
		"authorizations":        []map[string]any{{"enterprise_id": nil, "team_id": s.teamID, "user_id": DefaultBotUser, "is_bot": true, "is_enterprise_install": false}},
		"is_ext_shared_channel": false, "event_context": fmt.Sprintf("4-fake-%s", id),
	}
	return s.enqueueLocked(EnvelopeEventsAPI, id, payload)
}

// echoLocked delivers the message event of the bot's own message, as Slack
// does to an app subscribed to the channel's messages; s.mu must be held.
func (s *Server) echoLocked(c *channel, m *Message) {
	if !s.subs[subscriptionFor(c.info)] {
		return
	}
	ev := s.messageJSON(m)
	ev["channel"] = c.info.ID
	ev["channel_type"] = c.info.Type()
	ev["event_ts"] = m.TS
	s.eventLocked(ev)
}

func subscriptionFor(c Channel) string {
	if c.IsIM {
		return "message.im"
	}
	return "message.channels"
}
