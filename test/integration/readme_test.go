package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// The README's "Try it in a minute" block works pasted as one block: run
// by bash as it stands, with the dispatch binary built into a temporary
// directory in place of ./dispatch (its go build line is what made that
// binary). The sends must not race the daemon's socket, and the daemon's
// log lines must not mix into the output.
func TestReadmeEchoDemo(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(daemontest.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := demoBlock(t, string(readme))
	bin, _ := daemontest.Binaries(t)
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "dispatch")); err != nil {
		t.Fatal(err)
	}
	var script []string
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "go build ") {
			continue // the binary is built already
		}
		script = append(script, line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir // ./dispatch is the test's binary
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "DISPATCH_CONFIG" && k != "CLAUDECODE" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out, errOut := stdout.String(), stderr.String()
	if err != nil {
		t.Fatalf("the demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || lines[0] != "hello there" {
		t.Errorf("first line %q, want the reply %q\n%s", lines[0], "hello there", out)
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(out) {
		t.Errorf("no message id alone on a line:\n%s", out)
	}
	for _, want := range []string{"CHAT", "alice", "family-group", `text="hello there"`, "reply"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"not reachable", "no such file", "level=", "msg="} {
		if strings.Contains(errOut, bad) {
			t.Errorf("the demo's stderr has %q:\n%s", bad, errOut)
		}
	}
	if strings.Contains(out, "level=INFO msg=\"dispatch daemon") {
		t.Errorf("daemon log lines mixed into the output:\n%s", out)
	}
}

// demoBlock is the first ```sh block after the "Try it in a minute"
// heading.
func demoBlock(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "## Try it in a minute")
	if !ok {
		t.Fatal(`README.md has no "## Try it in a minute" section`)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatal("the demo section has no ```sh block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the demo block is not closed")
	}
	return block
}
