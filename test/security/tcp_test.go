package security

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

const (
	fullToken    = "full-access-token-0123456789"
	metricsToken = "read-only-token-9876543210"
)

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tcpDaemon starts an echo daemon with a TCP listener, both tokens, and
// the extra settings in set.
func tcpDaemon(t *testing.T, set map[string]any) (*daemontest.Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	addr := freePort(t)
	cfg := daemontest.With(echoAgent, map[string]any{
		"api.listen":             addr,
		"api.token_file":         writeSecret(t, dir, "token", fullToken),
		"api.metrics_token_file": writeSecret(t, dir, "metrics-token", metricsToken),
	})
	for k, v := range set {
		cfg[k] = v
	}
	return daemontest.Start(t, daemontest.Set(cfg)), addr
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A flood of unauthenticated connections must not exhaust the daemon's
// descriptors: the TCP listener holds a bounded number, and the control
// socket keeps serving.
func TestTCPFloodIsBounded(t *testing.T) {
	d, addr := tcpDaemon(t, nil)
	base := openFDs(t, d.Pid())
	const flood = 390
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // let the daemon accept what it will
	held := openFDs(t, d.Pid()) - base
	t.Logf("%d idle connections: the daemon holds %d more descriptors", flood, held)
	if held > 64+16 {
		t.Errorf("the daemon holds %d descriptors for %d idle TCP connections; want at most the connection cap (64) and a few", held, flood)
	}
	start := time.Now()
	done := make(chan string, 1)
	go func() { done <- d.Send("alice", "hello during a flood") }()
	select {
	case id := <-done:
		d.WaitMessage(id, "done", 10*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("a send over the control socket hung during the flood")
	}
	t.Logf("control-socket send during the flood: %v", time.Since(start).Round(time.Millisecond))
	// Once the flood ends the listener serves again at once.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("Authorization", "Bearer "+fullToken)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("an authenticated request after the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("authenticated /healthz: %d", resp.StatusCode)
	}
}

// A 401 closes its connection at once instead of keeping it for the idle
// timeout.
func TestUnauthorizedClosesTheConnection(t *testing.T) {
	_, addr := tcpDaemon(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !resp.Close {
		t.Fatalf("status %d, close %v; want 401 with Connection: close", resp.StatusCode, resp.Close)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after a 401 the connection is still open (read: %v)", err)
	}
}

func get(t *testing.T, client *http.Client, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The metrics scraper's token reads the monitoring routes and nothing
// else; the Bearer scheme is case-insensitive.
func TestReadOnlyTokenOverTCP(t *testing.T) {
	d, addr := tcpDaemon(t, nil)
	id := d.Send("alice", "private words")
	c := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + addr
	for _, tt := range []struct {
		path, auth string
		code       int
	}{
		{"/metrics", "Bearer " + metricsToken, 200},
		{"/healthz", "bearer " + metricsToken, 200},
		{"/readyz", "Bearer " + metricsToken, 200},
		{"/v1/messages/" + id, "Bearer " + metricsToken, 403},
		{"/v1/queue", "Bearer " + metricsToken, 403},
		{"/v1/status", "Bearer " + metricsToken, 403},
		{"/v1/messages/" + id, "BEARER " + fullToken, 200},
		{"/v1/status", "", 401},
	} {
		if got := get(t, c, base+tt.path, tt.auth); got != tt.code {
			t.Errorf("GET %s with %q: %d, want %d", tt.path, tt.auth, got, tt.code)
		}
	}
}

// A token file that others may read is refused at start.
func TestReadableTokenFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	tok := writeSecret(t, dir, "token", fullToken)
	if err := os.Chmod(tok, 0o644); err != nil {
		t.Fatal(err)
	}
	d := daemontest.New(t, daemontest.Set(daemontest.With(echoAgent, map[string]any{
		"api.listen": freePort(t), "api.token_file": tok,
	})))
	out := refusedStart(t, d)
	if !strings.Contains(out, "api.token_file") || !strings.Contains(out, "chmod 600") {
		t.Errorf("refusal does not name the key and the fix:\n%s", out)
	}
}

// With a certificate the TCP listener speaks TLS only.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert := writeSecret(t, dir, "cert.pem", string(certPEM))
	key := writeSecret(t, dir, "key.pem", string(keyPEM))
	_, addr := tcpDaemon(t, map[string]any{"api.tls_cert_file": cert, "api.tls_key_file": key})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := get(t, tlsClient, "https://"+addr+"/healthz", "Bearer "+fullToken); got != 200 {
		t.Errorf("HTTPS /healthz: %d", got)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("Authorization", "Bearer "+fullToken)
	if resp, err := plain.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS listener")
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// A channel's token file that group or others may read is refused like
// the API's.
func TestReadableChannelTokenFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	tok := writeSecret(t, dir, "telegram.token", "123456:fake-telegram-token")
	if err := os.Chmod(tok, 0o644); err != nil {
		t.Fatal(err)
	}
	d := daemontest.New(t, daemontest.Options{Set: echoAgent, YAML: "channels:\n  - kind: telegram\n    token_file: " + tok +
		"\n    api_url: http://127.0.0.1:9\n"})
	out := refusedStart(t, d)
	if !strings.Contains(out, "channels[0].token_file") || !strings.Contains(out, "chmod 600") {
		t.Errorf("refusal does not name the key and the fix:\n%s", out)
	}
}
