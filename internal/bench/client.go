package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// client is a lean HTTP client for the control socket. Every benchmark
// client runs on the same cores as the daemon, so it avoids work it does not
// need: bodies are built by hand and only the fields read are decoded.
type client struct {
	http *http.Client
}

func newClient(socket string, conns int) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// One kept-alive connection per concurrent client: the default of
		// two idle connections per host would make the others redial.
		MaxIdleConns:        conns + 4,
		MaxIdleConnsPerHost: conns + 4,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	return &client{http: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
}

// do sends one request and returns the body of a 2xx answer.
func (c *client) do(ctx context.Context, method, path string, body []byte, buf *bytes.Buffer) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://dispatch"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &statusError{resp.StatusCode, buf.String()}
	}
	return buf.Bytes(), nil
}

// messageBody is the JSON of POST /v1/messages. Chat ids and texts made by
// the bench are plain ASCII, but quoting keeps it correct for any input.
func messageBody(chat, text string) []byte {
	b := make([]byte, 0, 32+len(chat)+len(text))
	b = append(b, `{"chat_id":`...)
	b = strconv.AppendQuote(b, chat)
	b = append(b, `,"text":`...)
	b = strconv.AppendQuote(b, text)
	return append(b, '}')
}

// conn is one kept-alive HTTP/1.1 connection to the control socket, used by
// one goroutine at a time, for the requests whose cost is measured. It
// writes requests itself and parses answers with http.ReadResponse, so a
// request costs no goroutine hand-off: net/http's Transport runs a read and
// a write goroutine per connection and switches between them and the
// caller on every request, which on a 2-core machine is CPU taken from the
// daemon under test.
type conn struct {
	socket string
	c      net.Conn
	br     *bufio.Reader
	req    []byte
	body   bytes.Buffer
}

func newConn(socket string) *conn { return &conn{socket: socket} }

func (c *conn) close() {
	if c.c != nil {
		_ = c.c.Close()
		c.c = nil
	}
}

// do sends one request (body nil for GET) and returns the body of a 2xx
// answer, valid until the next call. A connection the daemon closed is
// redialled once.
func (c *conn) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		data, err, fresh := c.try(ctx, method, path, body)
		if err == nil || fresh || attempt > 0 || ctx.Err() != nil {
			return data, err
		}
		var se *statusError
		if errors.As(err, &se) {
			return nil, err
		}
		c.close() // a stale kept-alive connection: dial again
	}
}

func (c *conn) try(ctx context.Context, method, path string, body []byte) (data []byte, err error, fresh bool) {
	if c.c == nil {
		var d net.Dialer
		if c.c, err = d.DialContext(ctx, "unix", c.socket); err != nil {
			return nil, err, true
		}
		c.br = bufio.NewReaderSize(c.c, 16<<10)
		fresh = true
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	} else {
		_ = c.c.SetDeadline(time.Now().Add(60 * time.Second))
	}
	r := append(c.req[:0], method...)
	r = append(r, ' ')
	r = append(r, path...)
	r = append(r, " HTTP/1.1\r\nHost: dispatch\r\n"...)
	if body != nil {
		r = append(r, "Content-Type: application/json\r\nContent-Length: "...)
		r = strconv.AppendInt(r, int64(len(body)), 10)
		r = append(r, "\r\n"...)
	}
	r = append(r, "\r\n"...)
	r = append(r, body...)
	c.req = r
	if _, err := c.c.Write(r); err != nil {
		c.close()
		return nil, err, fresh
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return nil, err, fresh
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	if err != nil {
		return nil, err, fresh
	}
	if resp.StatusCode/100 != 2 {
		return nil, &statusError{resp.StatusCode, c.body.String()}, fresh
	}
	return c.body.Bytes(), nil, fresh
}

// send accepts one message and returns its id.
func (c *conn) send(ctx context.Context, chat, text string) (string, error) {
	data, err := c.do(ctx, "POST", "/v1/messages", messageBody(chat, text))
	if err != nil {
		return "", err
	}
	var acc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &acc); err != nil || acc.ID == "" {
		return "", fmt.Errorf("accept: unexpected answer %q", data)
	}
	return acc.ID, nil
}

// state returns a message's state.
func (c *conn) state(ctx context.Context, id string) (string, error) {
	data, err := c.do(ctx, "GET", "/v1/messages/"+id, nil)
	if err != nil {
		return "", err
	}
	var m struct {
		State string `json:"state"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("get message: %w", err)
	}
	if m.State == "dead" {
		return m.State, fmt.Errorf("message %s is dead: %s", id, m.Error)
	}
	return m.State, nil
}

// statusInfo is the part of GET /v1/status the bench reads.
type statusInfo struct {
	Daemon struct {
		PID     int    `json:"pid"`
		Version string `json:"version"`
		API     string `json:"api"`
	} `json:"daemon"`
	Sessions []json.RawMessage `json:"sessions"`
	Queue    struct {
		Pending  int `json:"pending"`
		Inflight int `json:"inflight"`
		Dead     int `json:"dead"`
		Done     int `json:"done"`
	} `json:"queue"`
}

func (c *client) status(ctx context.Context) (statusInfo, int, error) {
	var (
		buf bytes.Buffer
		st  statusInfo
	)
	data, err := c.do(ctx, "GET", "/v1/status", nil, &buf)
	if err != nil {
		return st, 0, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, 0, fmt.Errorf("status: %w", err)
	}
	return st, len(data), nil
}

// queueEmpty reports whether no message is pending or in flight, asking for
// at most one of each so the answer stays cheap whatever the queue holds.
func (c *client) queueEmpty(ctx context.Context) (bool, error) {
	var buf bytes.Buffer
	for _, st := range []string{"pending", "inflight"} {
		data, err := c.do(ctx, "GET", "/v1/queue?state="+st+"&limit=1", nil, &buf)
		if err != nil {
			return false, err
		}
		var page struct {
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return false, fmt.Errorf("queue: %w", err)
		}
		if len(page.Messages) > 0 {
			return false, nil
		}
	}
	return true, nil
}

// metric reads one unlabelled sample from GET /metrics; ok is false when it
// is missing.
func (c *client) metric(ctx context.Context, name string) (float64, bool) {
	var buf bytes.Buffer
	data, err := c.do(ctx, "GET", "/metrics", nil, &buf)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}
