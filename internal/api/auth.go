package api

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// MinTokenLen is the shortest bearer token accepted.
const MinTokenLen = 16

// LoadToken reads a bearer token from the file at path (surrounding white
// space trimmed); key names the setting in errors. A file that group or
// others may read is refused (its token would not be a secret), and so is a
// token shorter than MinTokenLen bytes (an empty one would let anyone in).
func LoadToken(key, path string) (string, error) {
	if err := CheckTokenFile(path); err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinTokenLen {
		return "", fmt.Errorf("%s: %s holds a token of %d bytes; use at least %d", key, path, len(tok), MinTokenLen)
	}
	return tok, nil
}

// CheckTokenFile reports why the token file at path cannot be trusted to
// hold a secret: it must exist and be readable by its owner alone.
func CheckTokenFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: mode %04o lets group or others read the token; run chmod 600 %s", path, perm, path)
	}
	return nil
}

// Tokens are the bearer tokens of the TCP listener: Full opens every route,
// ReadOnly (optional) only the monitoring routes.
type Tokens struct {
	Full     string
	ReadOnly string
}

// readOnlyRoutes are the routes a read-only token opens (GET or HEAD).
var readOnlyRoutes = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// RequireToken wraps h so that every request must carry
// "Authorization: Bearer <token>" (the scheme in any case); tokens are
// compared in constant time. No or a wrong token gets 401, and the
// connection is closed so that an unauthenticated client cannot hold it;
// the read-only token on any other route gets 403.
func RequireToken(tok Tokens, h http.Handler) http.Handler {
	full := []byte(tok.Full)
	ro := []byte(tok.ReadOnly)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		switch {
		case ok && subtle.ConstantTimeCompare(got, full) == 1:
			h.ServeHTTP(w, r)
		case ok && len(ro) > 0 && subtle.ConstantTimeCompare(got, ro) == 1:
			if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !readOnlyRoutes[r.URL.Path] {
				writeError(w, http.StatusForbidden, "the read-only token opens only GET /metrics, /healthz and /readyz")
				return
			}
			h.ServeHTTP(w, r)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="dispatch"`)
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		}
	})
}

// bearer extracts the credentials of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 9110).
func bearer(h string) ([]byte, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	cred = strings.TrimSpace(cred)
	return []byte(cred), cred != ""
}
