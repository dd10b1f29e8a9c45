package web

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDaemon serves a few control-API routes on a unix socket and records
// what was forwarded to it.
type fakeDaemon struct {
	mu   sync.Mutex
	seen []string
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	body, _ := io.ReadAll(r.Body)
	f.seen = append(f.seen, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/v1/status":
		io.WriteString(w, `{"daemon":{"pid":1,"api":"up"},"sessions":[{"chat_id":"<b>x</b>","healthy":true}],"queue":{"dead":1},"webhooks":[{"url":"https://u:p@hook.example/?token=s3cret"}]}`)
	case r.URL.Path == "/v1/queue" && r.URL.Query().Get("state") == "dead":
		io.WriteString(w, `{"messages":[{"id":"m1","chat_id":"a","state":"dead","text":"boom"}]}`)
	case r.URL.Path == "/v1/queue":
		io.WriteString(w, `{"messages":[]}`)
	case r.URL.Path == "/v1/queue/retry", r.URL.Path == "/v1/queue/drop":
		io.WriteString(w, `{"ok":true}`)
	case r.URL.Path == "/v1/schedules" && r.Method == "GET":
		io.WriteString(w, `{"schedules":[{"id":"s-1","chat_id":"a","kind":"cron","expr":"0 8 * * 1-5","tz":"Europe/Berlin","text":"hi","catch_up":"one","paused":false,"created_at":"2026-12-07T10:00:00Z","next":"2026-12-08T07:00:00Z"}]}`)
	case r.URL.Path == "/v1/schedules/s-1" && r.Method == "DELETE":
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/v1/schedules/s-1/pause", r.URL.Path == "/v1/schedules/s-1/resume":
		io.WriteString(w, `{"id":"s-1","paused":true}`)
	case r.URL.Path == "/v1/queue/m1":
		io.WriteString(w, `{"id":"m1","text":"hello","state":"done"}`)
	case r.URL.Path == "/v1/events" && r.Header.Get("Accept") == "text/event-stream":
		if r.URL.Query().Get("after") == "1" {
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, `{"error":"gone","oldest":5}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 7\nevent: reply\ndata: {\"seq\":7,\"type\":\"reply\",\"chat_id\":\"a\",\"text\":\"hi\"}\n\n")
	case r.URL.Path == "/v1/events":
		io.WriteString(w, `{"events":[{"seq":7,"type":"reply","chat_id":"a","message_ids":["m1","m2"],"text":"hi"}],"next":7}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no route"}`)
	}
}

func (f *fakeDaemon) forwarded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// rig is a web server in front of a fake daemon.
type rig struct {
	srv    *Server
	url    string
	daemon *fakeDaemon
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fd := &fakeDaemon{}
	up := &http.Server{Handler: fd}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	s, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &rig{srv: s, url: hs.URL, daemon: fd}
}

// bearer adds the session token to every request, as the page does.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" && r.Header.Get(TokenHeader) == "" {
		r.Header.Set(TokenHeader, "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// client is a browser without the session token (and with a cookie jar,
// to show that nothing in it counts).
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// exchange trades secret for a session token as the page's script does;
// "" when refused.
func exchange(t *testing.T, base, secret string) (string, *http.Response) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"secret": secret})
	resp, out := do(t, client(t), "POST", base+"/api/session", map[string]string{"Content-Type": "application/json"}, string(body))
	var s struct{ Token string }
	_ = json.Unmarshal([]byte(out), &s)
	return s.Token, resp
}

// login spends the secret and returns a client that sends the token.
func (r *rig) login(t *testing.T) *http.Client {
	t.Helper()
	tok, resp := exchange(t, r.url, r.srv.Secret())
	if resp.StatusCode != 200 || tok == "" {
		t.Fatalf("secret exchange: %d", resp.StatusCode)
	}
	return &http.Client{Transport: bearer{tok}, Timeout: 10 * time.Second}
}

func TestSecretIsSpentOnceForAToken(t *testing.T) {
	r := newRig(t)
	secret := r.srv.Secret()
	if len(secret) < 40 {
		t.Fatalf("secret %q is short", secret)
	}
	// A wrong secret spends nothing.
	if tok, resp := exchange(t, r.url, "wrong"); resp.StatusCode != 401 || tok != "" {
		t.Fatalf("wrong secret: %d", resp.StatusCode)
	}
	// Opening the printed URL serves the page, and spends nothing and
	// sets nothing: the page's script makes the exchange.
	resp, body := do(t, client(t), "GET", URL(strings.TrimPrefix(r.url, "http://"), secret), nil, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>dispatch</title>") || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("the printed URL: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	tok, resp := exchange(t, r.url, secret)
	if resp.StatusCode != 200 || len(tok) < 40 {
		t.Fatalf("first exchange: %d, token %q", resp.StatusCode, tok)
	}
	if sc := resp.Header.Get("Set-Cookie"); sc != "" {
		t.Errorf("the exchange sets a cookie: %q", sc)
	}
	if r.srv.Secret() != "" {
		t.Error("the secret is still valid after the exchange")
	}
	// The same secret again, from another browser: refused.
	if tok2, resp := exchange(t, r.url, secret); resp.StatusCode != 401 || tok2 != "" {
		t.Fatalf("second use of the secret: %d", resp.StatusCode)
	}
	// The token holder goes on; the token is good only in the header.
	if resp, _ := do(t, client(t), "GET", r.url+"/api/status", map[string]string{"Authorization": "Bearer " + tok}, ""); resp.StatusCode != 200 {
		t.Fatalf("with the token: %d", resp.StatusCode)
	}
	for _, hdr := range []map[string]string{
		{"Authorization": tok}, {"Authorization": "Bearer x" + tok}, {"Cookie": "token=" + tok}, {"X-Token": tok},
	} {
		if resp, _ := do(t, client(t), "GET", r.url+"/api/status?token="+tok, hdr, ""); resp.StatusCode != 401 {
			t.Errorf("token in %v: %d", hdr, resp.StatusCode)
		}
	}
}

// The page's files are anyone's (they hold no data); every /api path and
// anything else is refused without the token.
func TestRefusedWithoutToken(t *testing.T) {
	r := newRig(t)
	for _, p := range []string{"/", "/app.js", "/app.css"} {
		if resp, _ := do(t, client(t), "GET", r.url+p, nil, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	cases := []struct{ method, path string }{
		{"GET", "/api/session"}, {"GET", "/api/message?id=m1"},
		{"GET", "/api/status"}, {"GET", "/api/dead"}, {"GET", "/api/chat?chat=a"}, {"GET", "/api/events"},
		{"POST", "/api/retry"}, {"POST", "/api/drop"}, {"GET", "/v1/status"}, {"GET", "/nope"},
		{"POST", "/?secret=" + url.QueryEscape(r.srv.Secret())},
		{"GET", "/api/status?secret=" + url.QueryEscape(r.srv.Secret())},
	}
	for _, tc := range cases {
		resp, body := do(t, client(t), tc.method, r.url+tc.path, map[string]string{"Content-Type": "application/json"}, `{"id":"m1"}`)
		if resp.StatusCode != 401 || strings.Contains(body, "dispatch</title>") {
			t.Errorf("%s %s without the token: %d %q", tc.method, tc.path, resp.StatusCode, body)
		}
		checkHeaders(t, tc.path, resp.Header)
	}
	if n := len(r.daemon.forwarded()); n != 0 {
		t.Errorf("%d requests reached the daemon: %q", n, r.daemon.forwarded())
	}
	if r.srv.Secret() == "" {
		t.Error("a request spent the secret")
	}
}

func checkHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": CSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") || strings.Contains(csp, "*") {
		t.Errorf("%s: CSP %q allows inline code or other origins", what, csp)
	}
}

func TestHeadersAndAssets(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	total := 0
	for _, tc := range []struct{ path, ctype string }{
		{"/", "text/html"}, {"/app.js", "text/javascript"}, {"/app.css", "text/css"},
		{"/api/status", "application/json"}, {"/api/dead", "application/json"}, {"/api/nope", "application/json"},
	} {
		resp, body := do(t, c, "GET", r.url+tc.path, nil, "")
		checkHeaders(t, tc.path, resp.Header)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if strings.HasPrefix(tc.ctype, "text/") {
			total += len(body)
		}
	}
	if total > 50<<10 {
		t.Errorf("the page weighs %d bytes, over 50 KB", total)
	}
	html, _ := assets.ReadFile("assets/index.html")
	if strings.Contains(string(html), "<script>") || strings.Contains(string(html), "style=") || strings.Contains(string(html), "://") {
		t.Error("index.html has inline script or style, or a link to another origin")
	}
}

// The status is forwarded without the webhook section; no config secret
// reaches the page.
func TestStatusDropsWebhooks(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	_, body := do(t, c, "GET", r.url+"/api/status", nil, "")
	if strings.Contains(body, "s3cret") || strings.Contains(body, "webhooks") || !strings.Contains(body, `"sessions"`) {
		t.Fatalf("status = %s", body)
	}
}

// A POST needs the token (a cross-site form cannot set the header), a
// same-origin Origin and a JSON body.
func TestPostNeedsToken(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	json := "application/json"
	cases := []struct {
		name   string
		path   string
		hdr    map[string]string
		body   string
		status int
	}{
		{"wrong token", "/api/retry", map[string]string{"Content-Type": json, TokenHeader: "Bearer wrong"}, `{"id":"m1"}`, 401},
		{"token not bearer", "/api/retry", map[string]string{"Content-Type": json, TokenHeader: "Basic eDp5"}, `{"id":"m1"}`, 401},
		{"cross origin", "/api/drop", map[string]string{"Content-Type": json, "Origin": "http://evil.example"}, `{"id":"m1"}`, 403},
		{"form post", "/api/retry", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, `id=m1`, 415},
		{"bad body", "/api/retry", map[string]string{"Content-Type": json}, `{"id":"m1","x":1}`, 400},
		{"control char", "/api/retry", map[string]string{"Content-Type": json}, `{"id":"m\u0001"}`, 400},
		{"other route", "/api/kill", map[string]string{"Content-Type": json}, `{"id":"m1"}`, 404},
		{"retry", "/api/retry", map[string]string{"Content-Type": json}, `{"id":"m1"}`, 200},
		{"drop", "/api/drop", map[string]string{"Content-Type": json, "Origin": r.url}, `{"id":"m1"}`, 200},
	}
	for _, tc := range cases {
		resp, body := do(t, c, "POST", r.url+tc.path, tc.hdr, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
	var posts []string
	for _, s := range r.daemon.forwarded() {
		if strings.HasPrefix(s, "POST") {
			posts = append(posts, s)
		}
	}
	want := []string{`POST /v1/queue/retry {"id":"m1"}`, `POST /v1/queue/drop {"id":"m1"}`}
	if strings.Join(posts, "|") != strings.Join(want, "|") {
		t.Fatalf("forwarded posts %q, want %q", posts, want)
	}
}

// Only the page's own routes reach the daemon: no path of the control API
// is reachable through the server.
func TestNoOpenProxy(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	for _, p := range []string{"/v1/status", "/api/../v1/status", "/api/queue/m1", "/api/events/../../v1/sessions", "/metrics", "/api/chat?chat=a%00"} {
		resp, _ := do(t, c, "GET", r.url+p, nil, "")
		if resp.StatusCode == 200 {
			t.Errorf("GET %s: 200", p)
		}
	}
	for _, s := range r.daemon.forwarded() {
		if !strings.HasPrefix(s, "GET /v1/status") && !strings.HasPrefix(s, "GET /v1/queue") && !strings.HasPrefix(s, "GET /v1/events") {
			t.Errorf("forwarded %q", s)
		}
	}
}

func TestChatView(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	resp, body := do(t, c, "GET", r.url+"/api/chat?chat=a", nil, "")
	var v ChatView
	if err := json.Unmarshal([]byte(body), &v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("chat view: %d %s", resp.StatusCode, body)
	}
	if len(v.Exchanges) != 1 || v.Exchanges[0].Reply != "hi" || len(v.Exchanges[0].Messages) != 2 ||
		v.Exchanges[0].Messages[0].Text != "hello" || !v.Exchanges[0].Messages[1].Gone {
		t.Fatalf("chat view = %+v", v)
	}
	if resp, _ := do(t, c, "GET", r.url+"/api/chat", nil, ""); resp.StatusCode != 400 {
		t.Errorf("no chat: %d", resp.StatusCode)
	}
	// One message in full (the dead-letter list clips): only by its id.
	if resp, body := do(t, c, "GET", r.url+"/api/message?id=m1", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, `"text":"hello"`) {
		t.Errorf("message m1: %d %s", resp.StatusCode, body)
	}
	for _, q := range []string{"", "?id=", "?id=a%00b", "?id=../status"} {
		if resp, _ := do(t, c, "GET", r.url+"/api/message"+q, nil, ""); resp.StatusCode == 200 {
			t.Errorf("message%s: 200", q)
		}
	}
}

func TestEventStream(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	read := func(hdr map[string]string, q string) string {
		req, _ := http.NewRequest("GET", r.url+"/api/events"+q, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		checkHeaders(t, "stream", resp.Header)
		if resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream Content-Type %q", resp.Header.Get("Content-Type"))
		}
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return b.String()
	}
	if got := read(nil, ""); !strings.Contains(got, "event: reply") {
		t.Fatalf("fresh stream: %q", got)
	}
	read(map[string]string{"Last-Event-ID": "7"}, "")
	read(nil, "?after=9")
	if got := read(nil, "?after=1"); !strings.HasPrefix(got, "event: gap") || !strings.Contains(got, "event: reply") {
		t.Fatalf("stream after a purged position: %q", got)
	}
	var streams []string
	for _, s := range r.daemon.forwarded() {
		if strings.HasPrefix(s, "GET /v1/events") {
			streams = append(streams, strings.TrimSpace(s))
		}
	}
	want := []string{"GET /v1/events?tail=100", "GET /v1/events?after=7", "GET /v1/events?after=9", "GET /v1/events?after=1", "GET /v1/events?tail=100"}
	if strings.Join(streams, "|") != strings.Join(want, "|") {
		t.Fatalf("upstream streams %q, want %q", streams, want)
	}
	if resp, _ := do(t, c, "GET", r.url+"/api/events?after=x", nil, ""); resp.StatusCode != 400 {
		t.Errorf("after=x: %d", resp.StatusCode)
	}
}

// With the daemon gone the API answers 502 with the reason, not a hang.
func TestDaemonDown(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer hs.Close()
	tok, _ := exchange(t, hs.URL, s.Secret())
	c := &http.Client{Transport: bearer{tok}, Timeout: 10 * time.Second}
	for _, p := range []string{"/api/status", "/api/events", "/api/dead"} {
		if resp, body := do(t, c, "GET", hs.URL+p, nil, ""); resp.StatusCode != 502 || !strings.Contains(body, "not reachable") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
}

// The schedules pass through; a pause, resume or removal reaches the
// daemon's route for that one schedule, and nothing else does.
func TestScheduleActions(t *testing.T) {
	r := newRig(t)
	c := r.login(t)
	if resp, body := do(t, c, "GET", r.url+"/api/schedules", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, `"expr":"0 8 * * 1-5"`) {
		t.Fatalf("schedules: %d %s", resp.StatusCode, body)
	}
	js := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"pause", `{"id":"s-1","action":"pause"}`, 200},
		{"resume", `{"id":"s-1","action":"resume"}`, 200},
		{"remove", `{"id":"s-1","action":"remove"}`, 200},
		{"unknown", `{"id":"s-2","action":"pause"}`, 404},
		{"bad action", `{"id":"s-1","action":"fire"}`, 400},
		{"no id", `{"action":"pause"}`, 400},
		{"path in id", `{"id":"../../v1/status","action":"pause"}`, 404},
		{"extra field", `{"id":"s-1","action":"pause","x":1}`, 400},
	} {
		if resp, body := do(t, c, "POST", r.url+"/api/schedule", js, tc.body); resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
	var acts []string
	for _, s := range r.daemon.forwarded() {
		if !strings.HasPrefix(s, "GET") {
			acts = append(acts, s)
		}
	}
	want := []string{"POST /v1/schedules/s-1/pause {}", "POST /v1/schedules/s-1/resume {}", "DELETE /v1/schedules/s-1 ",
		"POST /v1/schedules/s-2/pause {}", "POST /v1/schedules/..%2F..%2Fv1%2Fstatus/pause {}"}
	if strings.Join(acts, "|") != strings.Join(want, "|") {
		t.Errorf("forwarded %q, want %q", acts, want)
	}
	if resp, _ := do(t, client(t), "GET", r.url+"/api/schedules", nil, ""); resp.StatusCode != 401 {
		t.Errorf("schedules without the token: %d", resp.StatusCode)
	}
}
