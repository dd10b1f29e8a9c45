package faketelegram_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

type apiResp struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// call makes a raw API call with URL-encoded parameters.
func call(t *testing.T, base, token, method string, vals url.Values) apiResp {
	t.Helper()
	resp, err := http.PostForm(base+"/bot"+token+"/"+method, vals)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r apiResp
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if (resp.StatusCode == 200) != r.OK || (!r.OK && r.ErrorCode != resp.StatusCode) {
		t.Fatalf("%s: status %d with body %+v", method, resp.StatusCode, r)
	}
	return r
}

func updateIDs(t *testing.T, r apiResp) []int64 {
	t.Helper()
	if !r.OK {
		t.Fatalf("getUpdates failed: %+v", r)
	}
	var ups []faketelegram.Update
	if err := json.Unmarshal(r.Result, &ups); err != nil {
		t.Fatal(err)
	}
	ids := []int64{}
	for _, u := range ups {
		ids = append(ids, u.UpdateID)
	}
	return ids
}

func TestGetUpdatesSemantics(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	fake := faketelegram.New(faketelegram.WithClock(clk), faketelegram.WithFirstUpdateID(500))
	hs := httptest.NewServer(fake)
	defer hs.Close()
	defer fake.Close()
	tok := fake.Token()
	get := func(v url.Values) []int64 { return updateIDs(t, call(t, hs.URL, tok, "getUpdates", v)) }

	for range 5 {
		fake.SendText(ann, "m")
	}
	if ids := get(nil); !reflect.DeepEqual(ids, []int64{500, 501, 502, 503, 504}) {
		t.Fatalf("all pending: %v", ids)
	}
	if ids := get(url.Values{"limit": {"2"}}); !reflect.DeepEqual(ids, []int64{500, 501}) {
		t.Fatalf("limit: %v", ids)
	}
	// Unconfirmed updates come again; an offset confirms those below it.
	if ids := get(url.Values{"offset": {"502"}}); !reflect.DeepEqual(ids, []int64{502, 503, 504}) {
		t.Fatalf("offset 502: %v", ids)
	}
	if ids := get(nil); !reflect.DeepEqual(ids, []int64{502, 503, 504}) {
		t.Fatalf("after confirming: %v", ids)
	}
	if ids := get(url.Values{"offset": {"-1"}}); !reflect.DeepEqual(ids, []int64{504}) {
		t.Fatalf("offset -1: %v", ids)
	}
	if ids := get(url.Values{"offset": {"505"}}); len(ids) != 0 {
		t.Fatalf("all confirmed: %v", ids)
	}

	// A long poll waits for the next update.
	got := make(chan []int64, 1)
	go func() { got <- get(url.Values{"offset": {"505"}, "timeout": {"30"}}) }()
	waitPoll(t, clk)
	fake.SendText(ann, "wake up")
	if ids := <-got; !reflect.DeepEqual(ids, []int64{505}) {
		t.Fatalf("long poll: %v", ids)
	}

	// With nothing coming it answers empty when its timeout passes, not before.
	go func() { got <- get(url.Values{"offset": {"506"}, "timeout": {"30"}}) }()
	waitPoll(t, clk)
	clk.Advance(29 * time.Second)
	select {
	case ids := <-got:
		t.Fatalf("answered before its timeout: %v", ids)
	case <-time.After(50 * time.Millisecond):
	}
	clk.Advance(time.Second)
	if ids := <-got; len(ids) != 0 {
		t.Fatalf("timed out poll: %v", ids)
	}

	// A second poller ends the first with 409.
	conflict := make(chan apiResp, 1)
	go func() {
		conflict <- call(t, hs.URL, tok, "getUpdates", url.Values{"offset": {"506"}, "timeout": {"30"}})
	}()
	waitPoll(t, clk)
	go func() { got <- get(url.Values{"offset": {"506"}, "timeout": {"30"}}) }()
	if r := <-conflict; r.ErrorCode != 409 || !strings.HasPrefix(r.Description, "Conflict: terminated by other getUpdates request") {
		t.Fatalf("first poller: %+v", r)
	}
	fake.SendText(ann, "for the second")
	if ids := <-got; !reflect.DeepEqual(ids, []int64{506}) {
		t.Fatalf("second poller: %v", ids)
	}

	// allowed_updates is remembered and filters updates made after it.
	get(url.Values{"offset": {"507"}, "allowed_updates": {`["callback_query"]`}})
	fake.SendText(ann, "filtered out")
	if ids := get(url.Values{"offset": {"507"}}); len(ids) != 0 {
		t.Fatalf("message got past allowed_updates: %v", ids)
	}
	get(url.Values{"allowed_updates": {`[]`}})
	fake.SendText(ann, "let in")
	if ids := get(nil); !reflect.DeepEqual(ids, []int64{508}) {
		t.Fatalf("after resetting allowed_updates: %v", ids)
	}
}

// waitPoll waits until a getUpdates long poll has armed its timer.
func waitPoll(t *testing.T, clk *clock.Fake) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := clk.BlockUntil(c, 1); err != nil {
		t.Fatal("no long poll waiting")
	}
}

func TestRequestEncodings(t *testing.T) {
	fake := faketelegram.New()
	hs := httptest.NewServer(fake)
	defer hs.Close()
	defer fake.Close()
	fake.AddChat(faketelegram.Chat{ID: 5})
	base := hs.URL + "/bot" + fake.Token()

	do := func(req *http.Request) apiResp {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r apiResp
		json.NewDecoder(resp.Body).Decode(&r)
		return r
	}
	// JSON body with a nested reply_markup object; method names ignore case.
	req, _ := http.NewRequest("POST", base+"/SENDMESSAGE", strings.NewReader(`{"chat_id":5,"text":"<b>hi</b>","parse_mode":"HTML","reply_markup":{"inline_keyboard":[[{"text":"ok","callback_data":"ok"}]]}}`))
	req.Header.Set("Content-Type", "application/json")
	if r := do(req); !r.OK {
		t.Fatalf("JSON body: %+v", r)
	}
	// Query string only, by GET.
	req, _ = http.NewRequest("GET", base+"/sendMessage?chat_id=5&text=plain", nil)
	if r := do(req); !r.OK {
		t.Fatalf("query string: %+v", r)
	}
	sent := fake.Sent(5)
	if len(sent) != 2 || sent[0].Text != "hi" || sent[0].ReplyMarkup == nil || sent[1].Text != "plain" || sent[1].MessageID != 2 {
		t.Fatalf("sent %+v", sent)
	}
	req, _ = http.NewRequest("GET", base+"/noSuchMethod", nil)
	if r := do(req); r.ErrorCode != 404 || r.Description != "Not Found" {
		t.Fatalf("unknown method: %+v", r)
	}
	req, _ = http.NewRequest("GET", hs.URL+"/bot1:bad/getMe", nil)
	if r := do(req); r.ErrorCode != 401 || r.Description != "Unauthorized" {
		t.Fatalf("bad token: %+v", r)
	}
	// 429 carries parameters.retry_after.
	fake.FailNext("", 1, faketelegram.Fault{RetryAfter: 7})
	if r := call(t, hs.URL, fake.Token(), "getMe", nil); r.ErrorCode != 429 || r.Parameters.RetryAfter != 7 || r.Description != "Too Many Requests: retry after 7" {
		t.Fatalf("429: %+v", r)
	}
}

func TestControlHTTP(t *testing.T) {
	fake := faketelegram.New()
	fake.EnableControl()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	ctl := fake.URL() + faketelegram.ControlPrefix
	post := func(path, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(ctl+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	m := post("message", `{"from":{"id":9,"first_name":"Cy"},"text":"hello"}`)
	if m["update_id"].(float64) != 1 || m["message_id"].(float64) != 1 {
		t.Fatalf("message: %v", m)
	}
	r := call(t, fake.URL(), fake.Token(), "sendMessage", url.Values{"chat_id": {"9"}, "text": {"pick"}, "reply_markup": {`{"inline_keyboard":[[{"text":"A","callback_data":"a"}]]}`}})
	if !r.OK {
		t.Fatal(r)
	}
	m = post("press", `{"chat_id":9,"message_id":2,"from":{"id":9},"data":"a"}`)
	qid := m["callback_query_id"].(string)
	call(t, fake.URL(), fake.Token(), "answerCallbackQuery", url.Values{"callback_query_id": {qid}, "text": {"done"}})
	resp, err := http.Get(ctl + "answer?id=" + qid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"text":"done"`) {
		t.Fatalf("answer: %s", b)
	}
	post("fail", `{"method":"sendMessage","n":1,"status":429,"retry_after":2}`)
	if r := call(t, fake.URL(), fake.Token(), "sendMessage", url.Values{"chat_id": {"9"}, "text": {"x"}}); r.ErrorCode != 429 {
		t.Fatalf("fail: %+v", r)
	}
	post("limit", `{"chat_id":9,"for":"1h"}`)
	if r := call(t, fake.URL(), fake.Token(), "sendMessage", url.Values{"chat_id": {"9"}, "text": {"x"}}); r.ErrorCode != 429 || r.Parameters.RetryAfter != 3600 {
		t.Fatalf("limit: %+v", r)
	}
	post("limit", `{"chat_id":9,"for":"0s"}`)
	resp, err = http.Get(ctl + "chats/9")
	if err != nil {
		t.Fatal(err)
	}
	var chat struct {
		Sent []faketelegram.SentMessage
		Ops  []faketelegram.Op
	}
	json.NewDecoder(resp.Body).Decode(&chat)
	resp.Body.Close()
	if len(chat.Sent) != 1 || chat.Sent[0].Text != "pick" || len(chat.Ops) != 2 {
		t.Fatalf("chat: %+v", chat)
	}
	post("mode?m=502", ``)
	if resp, err := http.Get(fake.URL() + "/bot" + fake.Token() + "/getMe"); err != nil || resp.StatusCode != 502 {
		t.Fatalf("502 mode: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	post("mode?m=up", ``)
	for _, bad := range []string{`{"from":{}}`, `{"nope":1}`} {
		resp, _ := http.Post(ctl+"message", "application/json", strings.NewReader(bad))
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d", bad, resp.StatusCode)
		}
		resp.Body.Close()
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestParseHTML(t *testing.T) {
	e := func(typ string, off, n int) faketelegram.MessageEntity {
		return faketelegram.MessageEntity{Type: typ, Offset: off, Length: n}
	}
	for _, tc := range []struct {
		in, text string
		ents     []faketelegram.MessageEntity
		err      string
	}{
		{in: "plain", text: "plain"},
		{in: "<b>bold</b> <STRONG>x</STRONG>", text: "bold x", ents: []faketelegram.MessageEntity{e("bold", 0, 4), e("bold", 5, 1)}},
		{in: "<i>a<u>b</u></i>", text: "ab", ents: []faketelegram.MessageEntity{e("italic", 0, 2), e("underline", 1, 1)}},
		{in: "&lt;&gt;&amp;&quot;&#65;&#x42;&lt", text: `<>&"AB<`},
		{in: "AT&T &nbsp;", text: "AT&T &nbsp;"},
		{in: "1 > 0", text: "1 > 0"},
		{in: "😀<b>x</b>", text: "😀x", ents: []faketelegram.MessageEntity{e("bold", 2, 1)}},
		{in: `<a href="https://x.y/?a=1&amp;b=2">l</a>`, text: "l", ents: []faketelegram.MessageEntity{{Type: "text_link", Offset: 0, Length: 1, URL: "https://x.y/?a=1&b=2"}}},
		{in: `<pre><code class="language-go">x := 1</code></pre>`, text: "x := 1", ents: []faketelegram.MessageEntity{{Type: "pre", Offset: 0, Length: 6, Language: "go"}}},
		{in: `<code class="language-go">x</code>`, text: "x", ents: []faketelegram.MessageEntity{e("code", 0, 1)}},
		{in: `<blockquote expandable>q</blockquote><tg-spoiler>s</tg-spoiler><span class="tg-spoiler">t</span>`, text: "qst", ents: []faketelegram.MessageEntity{e("expandable_blockquote", 0, 1), e("spoiler", 1, 1), e("spoiler", 2, 1)}},
		{in: "<b></b>x", text: "x"},
		{in: "<b>a</>", text: "a", ents: []faketelegram.MessageEntity{e("bold", 0, 1)}},
		{in: "<p>x</p>", err: `Unsupported start tag "p" at byte offset 0`},
		{in: "<br/>", err: `Unsupported start tag "br/" at byte offset 0`},
		{in: "<b>x", err: `Can't find end tag corresponding to start tag "b"`},
		{in: "<b", err: `Unclosed start tag at byte offset 0`},
		{in: "<b>x</i>", err: `Unmatched end tag at byte offset 4, expected "</b>", found "</i>"`},
		{in: "</b>", err: `Unexpected end tag at byte offset 0`},
		{in: `<span>x</span>`, err: `Tag "span" must have class "tg-spoiler" at byte offset 0`},
		{in: `<a href=x"y>l</a>`, err: `Unexpected end of name token at byte offset 8`},
		{in: "\xff", err: "strings must be encoded in UTF-8"},
	} {
		text, ents, err := faketelegram.ParseHTML(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || text != tc.text || !reflect.DeepEqual(ents, tc.ents) {
			t.Errorf("%q: %q %+v %v, want %q %+v", tc.in, text, ents, err, tc.text, tc.ents)
		}
	}
}

func TestFindEntities(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"/new", "bot_command@0+4"},
		{"hi @dispatch_bot and /stop@dispatch_bot now", "mention@3+13 bot_command@21+18"},
		{"mail a@b.com, see https://x.y/z.", "url@18+13"},
		{"😀 /x", "bot_command@3+2"},
		{"path/to/file", ""},
	} {
		var got []string
		for _, e := range faketelegram.FindEntities(tc.in) {
			got = append(got, fmt.Sprintf("%s@%d+%d", e.Type, e.Offset, e.Length))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%q: %v, want %s", tc.in, got, tc.want)
		}
	}
}

func TestHangAndClose(t *testing.T) {
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	fake.AddChat(faketelegram.Chat{ID: 1})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	send := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", fake.URL()+"/bot"+fake.Token()+"/sendMessage?chat_id=1&text=x", nil)
		return c.Do(req)
	}

	// A hung request fails by the client's deadline and sends nothing.
	fake.SetMode(faketelegram.ModeHang)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, err := send(ctx); err == nil {
		t.Fatal("hung request answered")
	}
	cancel()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := fake.WaitFor(wctx, func() bool { return fake.Hanging() == 0 }); err != nil {
		t.Fatal("the fake still holds a request its client gave up: ", err)
	}
	if n := len(fake.Sent(1)); n != 0 {
		t.Fatalf("%d sent while hanging", n)
	}
	// One still waiting is answered once the API is back.
	done := make(chan int, 1)
	go func() {
		resp, err := send(context.Background())
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if err := fake.WaitFor(wctx, func() bool { return fake.Hanging() == 1 }); err != nil {
		t.Fatal(err)
	}
	fake.SetMode(faketelegram.ModeUp)
	if code := <-done; code != 200 {
		t.Fatalf("after hang: %d", code)
	}
	if err := fake.WaitFor(wctx, func() bool { return len(fake.Sent(1)) == 1 }); err != nil {
		t.Fatal(err)
	}

	// Close ends a waiting long poll and returns.
	polled := make(chan error, 1)
	go func() {
		resp, err := c.Get(fake.URL() + "/bot" + fake.Token() + "/getUpdates?timeout=60")
		if err == nil {
			resp.Body.Close()
		}
		polled <- err
	}()
	if err := fake.WaitFor(wctx, func() bool { return fake.Polling() }); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { fake.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a long poll")
	}
	<-polled
}
