package bench

import (
	"bytes"
	"context"
	"encoding/json"
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

// send accepts one message and returns its id.
func (c *client) send(ctx context.Context, chat, text string, buf *bytes.Buffer) (string, error) {
	data, err := c.do(ctx, "POST", "/v1/messages", messageBody(chat, text), buf)
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
func (c *client) state(ctx context.Context, id string, buf *bytes.Buffer) (string, error) {
	data, err := c.do(ctx, "GET", "/v1/messages/"+id, nil, buf)
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
		if len(bytes.TrimSpace(data)) > 2 { // anything but "[]"
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
