// Package daemontest runs the real dispatch binary against the stub Claude
// CLI (internal/testutil/stubclaude) for end-to-end tests.
//
// The binaries are built once per test binary (plain `go build`, cached
// with sync.Once). Start writes a config with short timers into a short
// temporary directory (a unix socket path must fit in 107 bytes), starts
// `dispatch daemon` as a child in its own process group, waits until
// GET /healthz answers and registers a cleanup that stops it (SIGTERM, then
// SIGKILL of its group after 20 s, which fails the test) and kills any
// process that still carries the daemon's state dir in its environment.
//
// A test package should call Main from its TestMain so the build directory
// is removed at the end:
//
//	func TestMain(m *testing.M) { daemontest.Main(m) }
package daemontest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildErr  error
	buildDir  string
	binPath   string
	stubPath  string
	modRoot   string
)

// Main runs the tests of m, removes the build directory and exits.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Binaries builds (once) and returns the paths of the dispatch binary and
// of the stub Claude CLI.
func Binaries(t testing.TB) (dispatch, stub string) {
	t.Helper()
	buildOnce.Do(build)
	if buildErr != nil {
		t.Fatalf("daemontest: build: %v", buildErr)
	}
	return binPath, stubPath
}

// ModuleRoot is the directory of the module's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	Binaries(t)
	return modRoot
}

func build() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		buildErr = fmt.Errorf("go env GOMOD: %w", err)
		return
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		buildErr = fmt.Errorf("go env GOMOD: not inside a module")
		return
	}
	modRoot = filepath.Dir(gomod)
	buildDir, err = os.MkdirTemp("", "dt-bin-")
	if err != nil {
		buildErr = err
		return
	}
	binPath = filepath.Join(buildDir, "dispatch")
	stubPath = filepath.Join(buildDir, "stubclaude")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []struct{ out, pkg string }{
		{binPath, "./cmd/dispatch"},
		{stubPath, "./internal/testutil/stubclaude"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
			cmd.Dir = modRoot
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %w\n%s", b.pkg, err, stderr.String())
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			buildErr = e
			return
		}
	}
}
