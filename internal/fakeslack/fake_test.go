package fakeslack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/fakeslack"
)

// raw is a test's plain HTTP and WebSocket view of the fake.
type raw struct {
	t    *testing.T
	fake *fakeslack.Server
	c    *http.Client
}

func startRaw(t *testing.T, opts ...fakeslack.Option) *raw {
	t.Helper()
	fake := fakeslack.New(opts...)
	fake.EnableControl()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() { fake.Close(); tr.CloseIdleConnections() })
	return &raw{t: t, fake: fake, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (r *raw) do(method, path, contentType, body string, header map[string]string) (int, http.Header, map[string]any) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.fake.URL()+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	json.Unmarshal(b, &v)
	return resp.StatusCode, resp.Header, v
}

func (r *raw) control(path, body string) map[string]any {
	r.t.Helper()
	code, _, v := r.do("POST", "/_control/"+path, "application/json", body, nil)
	if code != 200 {
		r.t.Fatalf("control %s %s: %d %v", path, body, code, v)
	}
	return v
}

func TestWebAPIEncodingsAndErrors(t *testing.T) {
	r := startRaw(t)
	bot := map[string]string{"Authorization": "Bearer " + r.fake.BotToken()}
	r.fake.DMChannel("U0ANN")

	// The same call as a form with token, as JSON with a Bearer header, as a GET query.
	for _, tc := range []struct{ method, path, ct, body string }{
		{"POST", "/api/chat.postMessage", "application/x-www-form-urlencoded", url.Values{"token": {r.fake.BotToken()}, "channel": {"D0ANN"}, "text": {"form"}}.Encode()},
		{"POST", "/api/chat.postMessage", "application/json", `{"channel":"D0ANN","text":"json","blocks":[{"type":"divider"}]}`},
		{"GET", "/api/chat.postMessage?channel=D0ANN&text=query&token=" + r.fake.BotToken(), "", ""},
	} {
		h := bot
		if strings.Contains(tc.body, "token=") || strings.Contains(tc.path, "token=") {
			h = nil
		}
		if code, _, v := r.do(tc.method, tc.path, tc.ct, tc.body, h); code != 200 || v["ok"] != true {
			t.Fatalf("%s %s: %d %v", tc.method, tc.ct, code, v)
		}
	}
	if msgs := r.fake.BotMessages("D0ANN"); len(msgs) != 3 || msgs[1].Text != "json" || string(msgs[1].Blocks) != `[{"type":"divider"}]` {
		t.Fatalf("messages %+v", msgs)
	}
	for _, tc := range []struct {
		path, body string
		header     map[string]string
		status     int
		err        string
	}{
		{"/api/auth.test", "", nil, 200, "not_authed"},
		{"/api/auth.test", "token=xoxb-nope", nil, 200, "invalid_auth"},
		{"/api/nope.nope", "", bot, 404, "unknown_method"},
		{"/api/chat.postMessage", "channel=D0ANN", bot, 200, "no_text"},
		{"/api/chat.postMessage", "channel=D0ANN&blocks=nope", bot, 200, "invalid_blocks_format"},
		{"/api/chat.postMessage", `channel=D0ANN&blocks=[{"type":"carousel"}]`, bot, 200, "invalid_blocks"},
		{"/api/reactions.add", "channel=D0ANN&timestamp=1.0&name=Bad Name", bot, 200, "invalid_name"},
		{"/api/users.info", "user=U0NOBODY", bot, 200, "user_not_found"},
		{"/api/conversations.info", "channel=C0NONE", bot, 200, "channel_not_found"},
		{"/api/files.getUploadURLExternal", "filename=a.txt", bot, 200, "invalid_arguments"},
	} {
		code, _, v := r.do("POST", tc.path, "application/x-www-form-urlencoded", tc.body, tc.header)
		if code != tc.status || v["ok"] != false || v["error"] != tc.err {
			t.Errorf("%s %s: %d %v, want %d %s", tc.path, tc.body, code, v, tc.status, tc.err)
		}
	}
}

func TestRateLimitForFollowsTheClock(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	r := startRaw(t, fakeslack.WithClock(clk))
	bot := map[string]string{"Authorization": "Bearer " + r.fake.BotToken()}
	r.control("ratelimit", `{"method":"auth.test","for":"2500ms"}`)
	code, h, v := r.do("POST", "/api/auth.test", "", "", bot)
	if code != 429 || h.Get("Retry-After") != "3" || v["error"] != "ratelimited" {
		t.Fatalf("limited: %d %v %v", code, h, v)
	}
	clk.Advance(2 * time.Second)
	if _, h, _ := r.do("POST", "/api/auth.test", "", "", bot); h.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q after 2 s", h.Get("Retry-After"))
	}
	clk.Advance(time.Second)
	if code, _, _ := r.do("POST", "/api/auth.test", "", "", bot); code != 200 {
		t.Fatalf("still limited: %d", code)
	}
	// Until cleared.
	r.control("ratelimit", `{"method":"auth.test","retry_after":9}`)
	for range 3 {
		if code, h, _ := r.do("POST", "/api/auth.test", "", "", bot); code != 429 || h.Get("Retry-After") != "9" {
			t.Fatalf("%d %v", code, h)
		}
	}
	if code, _, _ := r.do("DELETE", "/_control/ratelimit", "", "", nil); code != 200 {
		t.Fatal(code)
	}
	if code, _, _ := r.do("POST", "/api/auth.test", "", "", bot); code != 200 {
		t.Fatalf("after clearing: %d", code)
	}
	if n := r.fake.CallCount("auth.test"); n != 7 {
		t.Fatalf("%d calls recorded", n)
	}
}

// dial opens a Socket Mode connection by hand and returns it after hello.
func (r *raw) dial() *websocket.Conn {
	r.t.Helper()
	_, _, v := r.do("POST", "/api/apps.connections.open", "application/json", "", map[string]string{"Authorization": "Bearer " + r.fake.AppToken()})
	u, _ := v["url"].(string)
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		r.t.Fatalf("dial %q: %v", u, err)
	}
	r.t.Cleanup(func() { ws.Close() })
	if m := r.read(ws); m["type"] != "hello" || m["num_connections"] != float64(1) {
		r.t.Fatalf("first message %v", m)
	}
	// A ticket opens one connection.
	if _, resp, err := websocket.DefaultDialer.Dial(u, nil); err == nil || resp.StatusCode != 401 {
		r.t.Fatalf("second use of a ticket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.fake.WaitFor(ctx, func() bool { return r.fake.Connections() == 1 }); err != nil {
		r.t.Fatal(err)
	}
	return ws
}

func (r *raw) read(ws *websocket.Conn) map[string]any {
	r.t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil {
		r.t.Fatal(err)
	}
	return m
}

func TestSocketModeByHand(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	r := startRaw(t, fakeslack.WithClock(clk), fakeslack.WithPingInterval(time.Hour))
	ws := r.dial()

	// A press that is not acknowledged is not sent again.
	p := r.control("message", `{"user":"U0ANN","text":"hi"}`)
	env := r.read(ws)
	if env["type"] != "events_api" || env["retry_attempt"] != float64(0) || env["accepts_response_payload"] != false {
		t.Fatalf("envelope %v", env)
	}
	ws.WriteJSON(map[string]string{"envelope_id": env["envelope_id"].(string)})
	ts := p["ts"].(string)
	code, _, v := r.do("POST", "/api/chat.postMessage", "application/json",
		`{"channel":"D0ANN","text":"ok?","thread_ts":"`+ts+`","blocks":[{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"OK"},"action_id":"ok","value":"1"}]}]}`,
		map[string]string{"Authorization": "Bearer " + r.fake.BotToken()})
	if code != 200 {
		t.Fatal(v)
	}
	echo := r.read(ws)
	if echo["payload"].(map[string]any)["event"].(map[string]any)["bot_id"] == nil {
		t.Fatalf("echo %v", echo)
	}
	ws.WriteJSON(map[string]string{"envelope_id": echo["envelope_id"].(string)})
	pr := r.control("press", `{"channel":"D0ANN","ts":"`+v["ts"].(string)+`","user":"U0ANN","action_id":"ok"}`)
	in := r.read(ws)
	payload := in["payload"].(map[string]any)
	if in["type"] != "interactive" || in["envelope_id"] != pr["envelope_id"] || payload["type"] != "block_actions" {
		t.Fatalf("interactive %v", in)
	}
	if c := payload["container"].(map[string]any); c["thread_ts"] != ts || c["message_ts"] != v["ts"] {
		t.Fatalf("container %v", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.fake.WaitFor(ctx, func() bool { return len(r.fake.Acks()) == 2 }); err != nil {
		r.t.Fatal(err)
	}
	clk.BlockUntil(ctx, 2) // the ping and the press's acknowledgement clock
	clk.Advance(time.Minute)
	if err := r.fake.WaitFor(ctx, func() bool { e, _ := r.fake.Envelope(pr["envelope_id"].(string)); return e.GaveUp }); err != nil {
		r.t.Fatal(err)
	}
	if e, _ := r.fake.Envelope(pr["envelope_id"].(string)); e.Deliveries != 1 {
		t.Fatalf("press delivered %d times", e.Deliveries)
	}
	// An acknowledgement of an unknown envelope is recorded as such.
	ws.WriteJSON(map[string]string{"envelope_id": "nope"})
	if err := r.fake.WaitFor(ctx, func() bool { a := r.fake.Acks(); return len(a) == 3 && a[2].Unknown }); err != nil {
		r.t.Fatal(err)
	}

	// A warning, then a refresh request: the fake leaves the socket open.
	for _, reason := range []string{"warning", "refresh_requested"} {
		r.control("disconnect", `{"reason":"`+reason+`"}`)
		if m := r.read(ws); m["type"] != "disconnect" || m["reason"] != reason {
			t.Fatalf("disconnect %v", m)
		}
	}
	if code, _, _ := r.do("POST", "/_control/disconnect", "application/json", `{"reason":"bye"}`, nil); code != 400 {
		t.Fatal("bad reason accepted")
	}
	// Drop: the connection ends without a close frame.
	r.control("drop", `{}`)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil || websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after drop: %v", err)
	}
	if code, _, v := r.do("GET", "/_control/state", "", "", nil); code != 200 || v["mode"] != "up" {
		t.Fatal(v)
	}
}

func TestControlRefusesBadInput(t *testing.T) {
	r := startRaw(t)
	for _, tc := range []struct{ path, body string }{
		{"message", `{"text":"no user"}`},
		{"message", `{"user":"U0ANN"}`},
		{"message", `{"user":"U0ANN","text":"x","thread_ts":"1.0"}`},
		{"message", `{"user":"U0ANN","text":"x","nope":1}`},
		{"press", `{"channel":"D0ANN","ts":"1.0","user":"U0ANN","action_id":"x"}`},
		{"ratelimit", `{"method":"auth.test","for":"soon"}`},
		{"fail", `{"method":"auth.test","n":0,"error":"x"}`},
		{"mode?m=sideways", ``},
	} {
		if code, _, _ := r.do("POST", "/_control/"+tc.path, "application/json", tc.body, nil); code != 400 {
			t.Errorf("%s %s: %d", tc.path, tc.body, code)
		}
	}
}
