// Package supplychain checks how the pinned Claude Code CLI gets onto a
// machine: a committed lockfile with an integrity hash for every package,
// npm ci without install scripts, and no way to swap the version from the
// environment.
package supplychain

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func root(t *testing.T) string { return daemontest.ModuleRoot(t) }

func TestLockfilePinsEveryPackageWithAHash(t *testing.T) {
	dir := filepath.Join(root(t), "scripts", "claude-code")
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version      string            `json:"version"`
			Integrity    string            `json:"integrity"`
			Dependencies map[string]string `json:"dependencies"`
		} `json:"packages"`
	}
	for name, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s must be committed: %v", name, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	want := pkg.Dependencies["@anthropic-ai/claude-code"]
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(want) {
		t.Fatalf("package.json pins @anthropic-ai/claude-code to %q; want an exact version", want)
	}
	if lock.LockfileVersion < 2 {
		t.Errorf("lockfileVersion %d", lock.LockfileVersion)
	}
	if got := lock.Packages[""].Dependencies["@anthropic-ai/claude-code"]; got != want {
		t.Errorf("the lockfile's root wants %q, package.json %q: npm ci would refuse", got, want)
	}
	if got := lock.Packages["node_modules/@anthropic-ai/claude-code"].Version; got != want {
		t.Errorf("the lockfile installs %q, want %q", got, want)
	}
	for name, p := range lock.Packages {
		if name != "" && !strings.HasPrefix(p.Integrity, "sha512-") {
			t.Errorf("%s has no sha512 integrity hash", name)
		}
	}
}

func TestInstallScriptUsesTheLockfileWithoutScripts(t *testing.T) {
	script := filepath.Join(root(t), "scripts", "install-tools.sh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			code = append(code, l)
		}
	}
	body := strings.Join(code, "\n")
	if !regexp.MustCompile(`npm ci\b[^\n]*--ignore-scripts`).MatchString(body) {
		t.Error("install-tools.sh does not install with npm ci --ignore-scripts")
	}
	if strings.Contains(body, "npm install") {
		t.Error("install-tools.sh still runs npm install (no lockfile, install scripts run)")
	}
}

// The environment cannot silently move the pin: a different
// CLAUDE_CODE_VERSION is refused before npm runs.
func TestVersionOverrideIsRefused(t *testing.T) {
	cmd := exec.Command("bash", filepath.Join(root(t), "scripts", "install-tools.sh"))
	cmd.Env = append(os.Environ(), "CLAUDE_CODE_VERSION=0.0.1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("install-tools.sh accepted CLAUDE_CODE_VERSION=0.0.1:\n%s", out)
	}
	if !strings.Contains(string(out), "CLAUDE_CODE_VERSION") {
		t.Errorf("the refusal does not name the variable:\n%s", out)
	}
}
