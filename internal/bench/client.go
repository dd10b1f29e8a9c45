package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/wire"
)

// ctl is the bench's client for the calls it does not measure: the shared
// API client (internal/client). The measured calls go through conn.
type ctl struct {
	c *client.Client
}

func newCtl(socket string, conns int) *ctl {
	c, _ := client.New(client.Options{Socket: socket, Conns: conns, Timeout: 60 * time.Second})
	return &ctl{c: c}
}

func (c *ctl) close() { c.c.Close() }

// statusError is a non-2xx answer on a measured connection.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
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
// one goroutine at a time, for the requests whose cost is measured — the
// one place that does not use internal/client, on purpose. It
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
	var acc wire.Accepted
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
	var m wire.MessageOut
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("get message: %w", err)
	}
	if m.State == "dead" {
		return m.State, fmt.Errorf("message %s is dead: %s", id, m.Error)
	}
	return m.State, nil
}

// status is GET /v1/status and the size of its answer.
func (c *ctl) status(ctx context.Context) (wire.Status, int, error) {
	var (
		raw json.RawMessage
		st  wire.Status
	)
	if err := c.c.Do(ctx, "GET", "/v1/status", nil, &raw); err != nil {
		return st, 0, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, 0, fmt.Errorf("status: %w", err)
	}
	return st, len(raw), nil
}

// ready is nil once GET /readyz answers 200.
func (c *ctl) ready(ctx context.Context) error {
	return c.c.Do(ctx, "GET", "/readyz", nil, nil)
}

// webhookPending is the first webhook endpoint's pending deliveries.
func (c *ctl) webhookPending(ctx context.Context) (int, error) {
	hooks, err := c.c.Webhooks(ctx)
	if err != nil {
		return 0, err
	}
	if len(hooks) == 0 {
		return 0, errors.New("GET /v1/webhooks: no endpoint")
	}
	return hooks[0].Pending, nil
}

// queueEmpty reports whether no message is pending or in flight, asking for
// at most one of each so the answer stays cheap whatever the queue holds.
// It reads both shapes of GET /v1/queue — the page object of today and the
// bare array of earlier releases — so the bench can drive an older daemon
// (scripts/bench-compare.sh).
func (c *ctl) queueEmpty(ctx context.Context) (bool, error) {
	for _, st := range []string{"pending", "inflight"} {
		var raw json.RawMessage
		if err := c.c.Do(ctx, "GET", "/v1/queue?limit=1&state="+st, nil, &raw); err != nil {
			return false, err
		}
		n, err := queueLen(raw)
		if err != nil {
			return false, fmt.Errorf("GET /v1/queue: %w", err)
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// queueLen counts the messages of a GET /v1/queue answer in either shape.
func queueLen(raw []byte) (int, error) {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
		var msgs []json.RawMessage
		err := json.Unmarshal(t, &msgs)
		return len(msgs), err
	}
	var page wire.QueuePage
	err := json.Unmarshal(raw, &page)
	return len(page.Messages), err
}

// metricSum adds up every sample of one metric family from GET /metrics,
// whatever its labels (a histogram's NAME_count over its outcomes, say);
// ok is false when there is none.
func (c *ctl) metricSum(ctx context.Context, name string) (float64, bool) {
	code, data, err := c.c.Raw(ctx, "GET", "/metrics", nil)
	if err != nil || code != 200 {
		return 0, false
	}
	return sumSamples(string(data), name)
}

// sumSamples adds up the samples named name in a Prometheus text
// exposition, whatever their labels.
func sumSamples(text, name string) (sum float64, ok bool) {
	for line := range strings.SplitSeq(text, "\n") {
		rest, found := strings.CutPrefix(line, name)
		if !found || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.IndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			sum, ok = sum+f, true
		}
	}
	return sum, ok
}

// metric reads one unlabelled sample from GET /metrics; ok is false when it
// is missing.
func (c *ctl) metric(ctx context.Context, name string) (float64, bool) {
	code, data, err := c.c.Raw(ctx, "GET", "/metrics", nil)
	if err != nil || code != 200 {
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
