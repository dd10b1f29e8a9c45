package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

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
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-mode", "529", "-control-addr", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "http://127.0.0.1:") || !strings.HasPrefix(lines[1], "control: http://127.0.0.1:") {
		t.Fatalf("output %q", lines)
	}
	api, ctl := lines[0], strings.TrimPrefix(lines[1], "control: ")

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	do := func(method, url string) (int, error) {
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	mustDo := func(method, url string, want int) {
		t.Helper()
		if code, err := do(method, url); err != nil || code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, url, code, err, want)
		}
	}

	mustDo("POST", api+"/v1/messages", 529)
	mustDo("POST", api+"/_control/mode?m=ok", 200) // control on the API port
	mustDo("POST", api+"/v1/messages", 200)
	mustDo("POST", ctl+"mode?m=refuse", 200) // and on its own port, which outlives refuse
	// The switch answers first and closes the listener right after, so
	// poll (bounded) until a fresh connection is refused.
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tr.CloseIdleConnections() // a kept-alive connection would fail with EOF instead
		if _, err = do("POST", api+"/v1/messages"); errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("API in refuse mode: %v", err)
	}
	mustDo("POST", ctl+"mode?m=ok", 200)
	mustDo("POST", api+"/v1/messages", 200)
	mustDo("GET", ctl+"requests", 200)

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
