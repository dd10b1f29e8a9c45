package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/dispatchd/dispatch/internal/fsafe"
)

// MarkerFile holds, in the state dir, the random value of the marker
// variable every agent of this state dir carries. It is kept across
// restarts so that a new daemon recognises (and kills) the leftovers of a
// daemon that was killed; it is random so that no other process carries
// it by accident and nobody can guess it.
const MarkerFile = "agent.mark"

// agentMarker returns the state dir's marker value, creating it once.
func agentMarker(stateDir string) (string, error) {
	path := filepath.Join(stateDir, MarkerFile)
	f, err := fsafe.OpenPrivate(path)
	if err != nil {
		return "", fmt.Errorf("agent marker: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", fmt.Errorf("agent marker %s: %w", path, err)
	}
	if m := strings.TrimSpace(string(b)); len(m) == 32 {
		return m, nil
	}
	m := hex.EncodeToString(randBytes(16))
	if err := f.Truncate(0); err != nil {
		return "", fmt.Errorf("agent marker %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(m+"\n"), 0); err != nil {
		return "", fmt.Errorf("agent marker %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("agent marker %s: %w", path, err)
	}
	return m, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}
