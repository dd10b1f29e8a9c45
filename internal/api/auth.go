package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// LoadToken reads a bearer token from a file (surrounding white space
// trimmed). An empty token is refused: it would let anyone in.
func LoadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("api.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("api.token_file: %s holds a token of %d bytes; use at least 16", path, len(tok))
	}
	return tok, nil
}

// RequireToken wraps h so that every request must carry
// "Authorization: Bearer <token>"; the comparison takes constant time.
// Anything else gets 401.
func RequireToken(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dispatch"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		h.ServeHTTP(w, r)
	})
}
