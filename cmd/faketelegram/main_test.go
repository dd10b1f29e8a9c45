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
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-token", "42:abc", "-username", "my_bot", "-control-addr", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "http://127.0.0.1:") || lines[1] != "token: 42:abc" || !strings.HasPrefix(lines[2], "control: http://127.0.0.1:") {
		t.Fatalf("output %q", lines)
	}
	api, ctl := lines[0], strings.TrimPrefix(lines[2], "control: ")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get := func(u string, v any) int {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(v)
		return resp.StatusCode
	}
	var me struct {
		OK     bool
		Result struct {
			ID       int64
			Username string
		}
	}
	if get(api+"/bot42:abc/getMe", &me); !me.OK || me.Result.ID != 42 || me.Result.Username != "my_bot" {
		t.Fatalf("getMe %+v", me)
	}
	resp, err := c.Post(ctl+"message", "application/json", strings.NewReader(`{"from":{"id":5,"first_name":"Ann"},"text":"hello"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("control message: %v %v", resp, err)
	}
	resp.Body.Close()
	var ups struct {
		Result []struct {
			Message struct{ Text string }
		}
	}
	if get(api+"/bot42:abc/getUpdates?"+url.Values{"timeout": {"1"}}.Encode(), &ups); len(ups.Result) != 1 || ups.Result[0].Message.Text != "hello" {
		t.Fatalf("getUpdates %+v", ups)
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
		{"-nosuchflag"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}
