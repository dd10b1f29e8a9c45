package api

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	fullToken = "0123456789abcdef-full"
	roToken   = "0123456789abcdef-metrics"
)

func TestBearerToken(t *testing.T) {
	h := Handler(&backend{}, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	auth := RequireToken(Tokens{Full: fullToken, ReadOnly: roToken}, h)
	for _, tt := range []struct {
		method, path, header string
		code                 int
	}{
		{"GET", "/healthz", "", 401},
		{"GET", "/healthz", "Bearer wrong", 401},
		{"GET", "/healthz", "Basic " + fullToken, 401},
		{"GET", "/healthz", "Bearer", 401},
		{"GET", "/healthz", "Bearer " + fullToken, 200},
		// the scheme is case-insensitive
		{"GET", "/healthz", "bearer " + fullToken, 200},
		{"GET", "/healthz", "BEARER " + fullToken, 200},
		{"GET", "/v1/status", "Bearer " + fullToken, 200},
		// the read-only token opens the monitoring routes and nothing else
		{"GET", "/metrics", "Bearer " + roToken, 200},
		{"GET", "/healthz", "Bearer " + roToken, 200},
		{"GET", "/readyz", "Bearer " + roToken, 200},
		{"GET", "/v1/status", "Bearer " + roToken, 403},
		{"GET", "/v1/queue", "Bearer " + roToken, 403},
		{"GET", "/v1/messages/x", "Bearer " + roToken, 403},
		{"POST", "/v1/messages", "Bearer " + roToken, 403},
		{"POST", "/v1/sessions/kill", "Bearer " + roToken, 403},
		{"POST", "/v1/sessions/stop", "Bearer " + roToken, 403},
	} {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		rec := httptest.NewRecorder()
		auth.ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("%s %s with %q: %d, want %d", tt.method, tt.path, tt.header, rec.Code, tt.code)
		}
		if tt.code == 401 && rec.Header().Get("Connection") != "close" {
			t.Errorf("%s %s with %q: a 401 must close the connection", tt.method, tt.path, tt.header)
		}
	}
}

func TestLoadTokenRefusesReadableFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte(fullToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := LoadToken("api.token_file", p); err != nil || tok != fullToken {
		t.Fatalf("LoadToken = %q, %v", tok, err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadToken("api.metrics_token_file", p)
		if err == nil || !strings.Contains(err.Error(), "api.metrics_token_file") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %o: LoadToken = %v, want a refusal with a hint", mode, err)
		}
	}
	if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadToken("api.token_file", p); err == nil {
		t.Error("a 5-byte token was accepted")
	}
}
