// Package client is the one client of dispatch's control API, over the
// unix control socket or over TCP (with a bearer token, optionally TLS). The
// CLI, doctor, bench and the test helpers all use it; the request and
// answer shapes are the wire package's.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/wire"
)

// Options say where the daemon is and how to reach it. Exactly one of
// Socket and URL is set.
type Options struct {
	// Socket is the daemon's unix control socket.
	Socket string
	// URL is the daemon's TCP address, http://HOST:PORT or
	// https://HOST:PORT; it needs Token.
	URL string
	// Token is the bearer token sent with every request (TCP).
	Token string
	// TLS configures https:// (nil: the system's roots).
	TLS *tls.Config
	// Timeout bounds each request (0: no bound beyond the context's).
	Timeout time.Duration
	// WaitReady is how long a request keeps retrying while the daemon is
	// not there yet — the socket does not exist or refuses connections, as
	// right after `dispatch daemon &` — before it reports it unreachable.
	WaitReady time.Duration
	// Waiting, when set, is called once when a request has been waiting
	// for the daemon for WaitNotice (a person should hear what the pause
	// is), with how long it will wait in all.
	Waiting func(where string, wait time.Duration)
	// Conns is how many kept-alive connections to hold (0: net/http's
	// default of 2); NoKeepAlive opens a connection per request.
	Conns       int
	NoKeepAlive bool
	// MaxBody bounds an answer's size (0: 64 MiB).
	MaxBody int64
}

// WaitNotice is how long a request waits for an absent daemon before it
// says so (Options.Waiting).
const WaitNotice = time.Second

// Client talks to one daemon. It is safe for concurrent use.
type Client struct {
	o    Options
	base string // http://dispatch or the TCP URL, without a trailing /
	http *http.Client
}

// New returns a client for the daemon o names.
func New(o Options) (*Client, error) {
	if (o.Socket == "") == (o.URL == "") {
		return nil, errors.New("client: give either a socket or a URL")
	}
	tr := &http.Transport{
		DisableKeepAlives:   o.NoKeepAlive,
		MaxIdleConns:        max(o.Conns+4, 100),
		MaxIdleConnsPerHost: max(o.Conns+4, 2),
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	c := &Client{o: o}
	if o.Socket != "" {
		sock := o.Socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		c.base = "http://dispatch"
	} else {
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: %q is not an http:// or https:// address", o.URL)
		}
		tr.TLSClientConfig = o.TLS
		tr.Proxy = nil
		c.base = strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/")
	}
	if c.o.MaxBody <= 0 {
		c.o.MaxBody = 64 << 20
	}
	c.http = &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		// The API never redirects; following one would send the token on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// ForSocket is New for a unix socket with a request timeout.
func ForSocket(socket string, timeout time.Duration) *Client {
	c, _ := New(Options{Socket: socket, Timeout: timeout})
	return c
}

// Where names the daemon's address for messages.
func (c *Client) Where() string {
	if c.o.Socket != "" {
		return c.o.Socket
	}
	return c.base
}

// Close releases kept-alive connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an error answer from the daemon: its HTTP status and the
// "error" text (or the body, if it was not the usual JSON).
type Error struct {
	Status int
	Msg    string
	Body   []byte
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// Unreachable is a failure to reach the daemon at all.
type Unreachable struct {
	Where string
	Err   error
}

func (e *Unreachable) Error() string {
	msg := fmt.Sprintf("daemon not reachable: %s: %v", e.Where, e.Err)
	if errors.Is(e.Err, syscall.ENOENT) || errors.Is(e.Err, syscall.ECONNREFUSED) {
		msg += " (is `dispatch daemon` running with this config?)"
	}
	return msg
}

func (e *Unreachable) Unwrap() error { return e.Err }

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// StatusOf is the HTTP status of an error answer, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsUnreachable reports whether err means the daemon could not be reached.
func IsUnreachable(err error) bool {
	var u *Unreachable
	return errors.As(err, &u)
}

// Raw sends a request and returns the answer's status and body, whatever
// the status. body is nil, a []byte or string sent as is, or a value sent
// as JSON. Only a failure to reach the daemon (or to read the answer) is
// an error, an *Unreachable for the former.
func (c *Client) Raw(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var data []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			return 0, nil, err
		}
	}
	start := time.Now()
	deadline := start.Add(c.o.WaitReady)
	delay := 10 * time.Millisecond
	told := c.o.Waiting == nil
	for {
		code, out, err := c.once(ctx, method, path, body != nil, data)
		if err == nil || !notThereYet(err) || time.Now().Add(delay).After(deadline) || ctx.Err() != nil {
			return code, out, err
		}
		if !told && time.Since(start) >= WaitNotice {
			told = true
			c.o.Waiting(c.Where(), c.o.WaitReady)
		}
		select {
		case <-ctx.Done():
			return 0, nil, &Unreachable{c.Where(), ctx.Err()}
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// notThereYet: the daemon is not listening (yet).
func notThereYet(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

func (c *Client) once(ctx context.Context, method, path string, hasBody bool, data []byte) (int, []byte, error) {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, &Unreachable{c.Where(), err}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxBody))
	return resp.StatusCode, out, err
}

// Do sends a request (see Raw for body) and decodes a 2xx JSON answer into
// out (when not nil; a *json.RawMessage gets the body as it is). An
// answer of 400 or more is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	code, data, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if code >= 400 {
		var e wire.ErrorOut
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = string(bytes.TrimSpace(data))
		}
		return &Error{Status: code, Msg: e.Error, Body: data}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// --- the API's routes ---

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	var st wire.Status
	err := c.Do(ctx, "GET", "/v1/status", nil, &st)
	return st, err
}

// Healthz is GET /healthz: nil while the daemon's loops run.
func (c *Client) Healthz(ctx context.Context) error {
	return c.Do(ctx, "GET", "/healthz", nil, nil)
}

// Send is POST /v1/messages.
func (c *Client) Send(ctx context.Context, in wire.MessageIn) (wire.Accepted, error) {
	var acc wire.Accepted
	err := c.Do(ctx, "POST", "/v1/messages", in, &acc)
	return acc, err
}

// Message is GET /v1/messages/{id}: its state, reply and error, no text.
func (c *Client) Message(ctx context.Context, id string) (wire.MessageOut, error) {
	var m wire.MessageOut
	err := c.Do(ctx, "GET", "/v1/messages/"+url.PathEscape(id), nil, &m)
	return m, err
}

// QueueMessage is GET /v1/queue/{id}: one message in full.
func (c *Client) QueueMessage(ctx context.Context, id string) (wire.MessageOut, error) {
	var m wire.MessageOut
	err := c.Do(ctx, "GET", "/v1/queue/"+url.PathEscape(id), nil, &m)
	return m, err
}

// QueueFilter selects messages of a queue listing ("" = any).
type QueueFilter struct {
	Chat, State string
}

// QueuePage is GET /v1/queue: up to limit messages after the cursor.
func (c *Client) QueuePage(ctx context.Context, f QueueFilter, after string, limit int) (wire.QueuePage, error) {
	v := url.Values{}
	v.Set("limit", strconv.Itoa(limit))
	if f.Chat != "" {
		v.Set("chat", f.Chat)
	}
	if f.State != "" {
		v.Set("state", f.State)
	}
	if after != "" {
		v.Set("after", after)
	}
	var page wire.QueuePage
	err := c.Do(ctx, "GET", "/v1/queue?"+v.Encode(), nil, &page)
	return page, err
}

// EachQueued pages through the whole listing, calling fn for each message.
func (c *Client) EachQueued(ctx context.Context, f QueueFilter, fn func(wire.ListedOut) error) error {
	after := ""
	for {
		page, err := c.QueuePage(ctx, f, after, wire.MaxQueuePage)
		if err != nil {
			return err
		}
		for _, m := range page.Messages {
			if err := fn(m); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		after = page.Next
	}
}

// SessionOp is POST /v1/sessions/{op} (kill, restart, exempt, pause,
// resume).
func (c *Client) SessionOp(ctx context.Context, op string, req wire.ChatRequest) error {
	return c.Do(ctx, "POST", "/v1/sessions/"+op, req, nil)
}

// QueueOp is POST /v1/queue/{op} (retry, drop) on a dead message.
func (c *Client) QueueOp(ctx context.Context, op, id string) error {
	return c.Do(ctx, "POST", "/v1/queue/"+op, wire.IDRequest{ID: id}, nil)
}

// Events is GET /v1/events with the query q (after, limit, wait, chat,
// types).
func (c *Client) Events(ctx context.Context, q url.Values) (wire.EventsOut, error) {
	var page wire.EventsOut
	err := c.Do(ctx, "GET", "/v1/events?"+q.Encode(), nil, &page)
	return page, err
}

// Channels is GET /v1/channels.
func (c *Client) Channels(ctx context.Context) ([]wire.ChannelStatus, error) {
	var out wire.ChannelsOut
	err := c.Do(ctx, "GET", "/v1/channels", nil, &out)
	return out.Channels, err
}

// Webhooks is GET /v1/webhooks.
func (c *Client) Webhooks(ctx context.Context) ([]wire.EndpointStatus, error) {
	var out wire.WebhooksOut
	err := c.Do(ctx, "GET", "/v1/webhooks", nil, &out)
	return out.Webhooks, err
}

// RetryWebhook is POST /v1/webhooks/retry.
func (c *Client) RetryWebhook(ctx context.Context, endpoint string) (int, error) {
	var out wire.WebhookRetried
	err := c.Do(ctx, "POST", "/v1/webhooks/retry", wire.WebhookRetry{Endpoint: endpoint}, &out)
	return out.Retried, err
}

// Permissions is GET /v1/permissions: the open requests (of chat, when
// given), oldest first.
func (c *Client) Permissions(ctx context.Context, chat string) ([]wire.PermissionOut, error) {
	path := "/v1/permissions"
	if chat != "" {
		path += "?chat=" + url.QueryEscape(chat)
	}
	var out wire.PermissionsOut
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Requests, err
}

// Decide is POST /v1/permissions/{id}: the request as closed. A 409 (the
// request was already closed) and a 404 (no such request) are *Error.
func (c *Client) Decide(ctx context.Context, id string, in wire.DecisionIn) (wire.PermissionOut, error) {
	var out wire.PermissionOut
	err := c.Do(ctx, "POST", "/v1/permissions/"+url.PathEscape(id), in, &out)
	return out, err
}

// PermissionRules is GET /v1/permissions/rules.
func (c *Client) PermissionRules(ctx context.Context, chat string) ([]wire.RuleOut, error) {
	path := "/v1/permissions/rules"
	if chat != "" {
		path += "?chat=" + url.QueryEscape(chat)
	}
	var out wire.RulesOut
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Rules, err
}

// RemovePermissionRule is POST /v1/permissions/rules/remove.
func (c *Client) RemovePermissionRule(ctx context.Context, chat, tool string) error {
	return c.Do(ctx, "POST", "/v1/permissions/rules/remove", wire.RuleRequest{ChatID: chat, Tool: tool}, nil)
}

// Schedules is GET /v1/schedules: the schedules (of chat, when given),
// oldest first.
func (c *Client) Schedules(ctx context.Context, chat string) ([]wire.Schedule, error) {
	path := "/v1/schedules"
	if chat != "" {
		path += "?chat=" + url.QueryEscape(chat)
	}
	var out wire.SchedulesOut
	err := c.Do(ctx, "GET", path, nil, &out)
	return out.Schedules, err
}

// Schedule is GET /v1/schedules/{id}; a 404 is an *Error.
func (c *Client) Schedule(ctx context.Context, id string) (wire.Schedule, error) {
	var out wire.Schedule
	err := c.Do(ctx, "GET", "/v1/schedules/"+url.PathEscape(id), nil, &out)
	return out, err
}

// AddSchedule is POST /v1/schedules: the new schedule. A refused input is
// an *Error with status 400 and the reason.
func (c *Client) AddSchedule(ctx context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	var out wire.Schedule
	err := c.Do(ctx, "POST", "/v1/schedules", in, &out)
	return out, err
}

// RemoveSchedule is DELETE /v1/schedules/{id}; a 404 is an *Error.
func (c *Client) RemoveSchedule(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/schedules/"+url.PathEscape(id), nil, nil)
}

// PauseSchedule is POST /v1/schedules/{id}/pause (or /resume when not
// paused): the schedule as it is now.
func (c *Client) PauseSchedule(ctx context.Context, id string, paused bool) (wire.Schedule, error) {
	op := "resume"
	if paused {
		op = "pause"
	}
	var out wire.Schedule
	err := c.Do(ctx, "POST", "/v1/schedules/"+url.PathEscape(id)+"/"+op, nil, &out)
	return out, err
}
