package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Beyond loopback only with --listen, and then it says so; the URL is
// alone on its line of standard output, and its secret works once. No
// browser needed.
func TestWebCommand(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	cmd := d.Cmd("web", "--listen", "0.0.0.0:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := stderrFile(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	var u string
	select {
	case u = <-line:
	case <-time.After(20 * time.Second):
		t.Fatalf("no URL; stderr %q", stderr.String())
	}
	if !strings.HasPrefix(u, "http://0.0.0.0:") || !strings.Contains(u, "/?secret=") || strings.ContainsAny(u, " \t") {
		t.Fatalf("first line of stdout %q, want the URL alone", u)
	}
	if !strings.Contains(stderr.String(), "NOT loopback") {
		t.Errorf("stderr %q does not say it listens beyond loopback", stderr.String())
	}
	local := strings.Replace(u, "0.0.0.0", "127.0.0.1", 1)
	origin, _, _ := strings.Cut(local, "/?")
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(u string) (int, string) {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(origin + "/api/status"); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code, body := get(local); code != http.StatusOK || !strings.Contains(body, "<title>dispatch</title>") {
		t.Errorf("first visit: %d", code)
	}
	secret, _ := url.QueryUnescape(strings.SplitN(local, "secret=", 2)[1])
	exchange := func() int {
		body, _ := json.Marshal(map[string]string{"secret": secret})
		resp, err := c.Post(origin+"/api/session", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := exchange(); code != http.StatusOK {
		t.Errorf("the secret's exchange: %d", code)
	}
	if code := exchange(); code != http.StatusUnauthorized {
		t.Errorf("second exchange of the spent secret: %d", code)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dispatch web on SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("dispatch web did not stop on SIGTERM")
	}
}
