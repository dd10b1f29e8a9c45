package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-bot-token", "xoxb-t", "-app-token", "xapp-t", "-control-addr", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for len(lines) < 4 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "http://127.0.0.1:") || !strings.HasSuffix(lines[0], "/api/") ||
		lines[1] != "bot token: xoxb-t" || lines[2] != "app token: xapp-t" || !strings.HasPrefix(lines[3], "control: http://127.0.0.1:") {
		t.Fatalf("output %q", lines)
	}
	api, ctl := lines[0], strings.TrimPrefix(lines[3], "control: ")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	post := func(u string, form url.Values, v any) {
		t.Helper()
		resp, err := c.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(v)
	}
	var at struct {
		OK     bool
		UserID string `json:"user_id"`
	}
	if post(api+"auth.test", url.Values{"token": {"xoxb-t"}}, &at); !at.OK || at.UserID == "" {
		t.Fatalf("auth.test %+v", at)
	}
	resp, err := c.Post(ctl+"message", "application/json", strings.NewReader(`{"user":"U0ANN","text":"hello"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control message: %v %v", resp, err)
	}
	var posted struct{ Channel string }
	json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	var pm struct {
		OK bool
		TS string
	}
	if post(api+"chat.postMessage", url.Values{"token": {"xoxb-t"}, "channel": {posted.Channel}, "text": {"hi"}}, &pm); !pm.OK || pm.TS == "" {
		t.Fatalf("chat.postMessage %+v", pm)
	}
	var open struct {
		OK  bool
		URL string
	}
	if post(api+"apps.connections.open", url.Values{"token": {"xapp-t"}}, &open); !open.OK || !strings.HasPrefix(open.URL, "ws://127.0.0.1:") {
		t.Fatalf("apps.connections.open %+v", open)
	}
	cancel()
	io.Copy(io.Discard, pr)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "nope"},
		{"-addr", "0.0.0.0:0"},
		{"-addr", "127.0.0.1:0", "-control-addr", "0.0.0.0:0"},
		{"-ack-timeout", "0s"},
		{"-nosuchflag"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}
