package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestTCPListenerNeedsToken: with api.listen and api.token_file the API is
// also served on TCP, where every request needs the bearer token (401
// otherwise); the unix socket stays mode 0600.
func TestTCPListenerNeedsToken(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "token")
	const token = "s3cret-token-0123456789"
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, opts(with(noChecks, map[string]any{"api.listen": "127.0.0.1:0", "api.token_file": tokFile})))
	m := regexp.MustCompile(`TCP API listening.*addr=(\S+)`).FindStringSubmatch(d.ManagerLog())
	if m == nil {
		t.Fatalf("no TCP listen line in the manager log:\n%s", d.ManagerLog())
	}
	url := "http://" + m[1]
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", url+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer nope", 401}, {"Bearer " + token, 200}} {
		if got := get("/v1/status", tt.auth); got != tt.want {
			t.Errorf("GET /v1/status with %q = %d, want %d", tt.auth, got, tt.want)
		}
	}
	st, err := os.Stat(filepath.Join(d.StateDir, "dispatch.sock"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

// TestGarbageOnTheSocket: raw garbage, a half-sent request and an idle
// connection on the control socket neither crash nor stall the daemon.
func TestGarbageOnTheSocket(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))
	sock := filepath.Join(d.StateDir, "dispatch.sock")
	dial := func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	idle := dial() // never sends anything
	defer idle.Close()
	half := dial()
	defer half.Close()
	fmt.Fprint(half, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"chat_id\":")

	for _, junk := range []string{"\x00\x01\x02\xff\xfe garbage\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", strings.Repeat("A", 70000) + "\r\n\r\n"} {
		c := dial()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, junk)
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 505") {
			t.Errorf("garbage %q answered %q, want a 4xx (or 505)", junk[:min(len(junk), 20)], line)
		}
	}
	// meanwhile the daemon serves normally
	id := d.Send("after-garbage", "still here")
	d.WaitMessage(id, "done", 15*time.Second)
	if code, _ := d.Get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d after garbage", code)
	}
}

// TestMetrics: GET /metrics serves the dispatch_ metrics of the issue.
func TestMetrics(t *testing.T) {
	d := daemontest.Start(t, opts(nil))
	d.WaitMessage(d.Send("m", "hello"), "done", 15*time.Second)
	d.WaitFor(func() bool { return strings.Contains(d.ManagerLog(), `msg="health check"`) }, 10*time.Second, "a health check")
	if code, body := d.Get("/readyz"); code != 200 {
		t.Fatalf("GET /readyz = %d %s", code, body)
	}
	code, body := d.Get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	text := string(body)
	for _, name := range []string{
		`dispatch_sessions{state="idle"} 1`, "dispatch_agent_processes 1", `dispatch_restarts_total{reason="dead"} 0`,
		"dispatch_health_checks_total", "dispatch_health_check_duration_seconds_bucket", "dispatch_sessions_reaped_total",
		`dispatch_messages{state="done"} 1`, "dispatch_messages_accepted_total 1", "dispatch_messages_done_total 1",
		"dispatch_turn_duration_seconds_bucket", "dispatch_api_up 1", "dispatch_api_outage_seconds_total",
		"dispatch_dead_letters_total",
	} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	if t.Failed() {
		t.Log(text[:min(len(text), 4000)])
	}
}
