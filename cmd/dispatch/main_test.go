package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-runewidth"
	"github.com/spf13/cobra"
)

// run runs the CLI in process with args; stdin is in.
func run(t *testing.T, in string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(in))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// Every command's help has an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Name() != "help" && c.Name() != "completion" && !strings.HasPrefix(c.CommandPath(), "dispatch completion") {
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%q has no Example", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

// --config names $DISPATCH_CONFIG and shows no default that contradicts it.
func TestConfigFlagHelp(t *testing.T) {
	t.Setenv("DISPATCH_CONFIG", "/somewhere/else.yaml")
	f := newRoot().PersistentFlags().Lookup("config")
	if !strings.Contains(f.Usage, "$DISPATCH_CONFIG") || f.DefValue != "" {
		t.Errorf("--config usage %q, default %q", f.Usage, f.DefValue)
	}
	g := &globals{}
	if got := g.configFile(); got != "/somewhere/else.yaml" {
		t.Errorf("config file from the environment = %q", got)
	}
	g.configPath = "/given.yaml"
	if got := g.configFile(); got != "/given.yaml" {
		t.Errorf("--config does not win over $DISPATCH_CONFIG: %q", got)
	}
}

func TestVersion(t *testing.T) {
	out, err := run(t, "", "version")
	if err != nil || !strings.HasPrefix(out, "dispatch "+version) {
		t.Errorf("version: %q, %v", out, err)
	}
}

// An unquoted text of several words gets a hint to quote it.
func TestSendHintsToQuote(t *testing.T) {
	_, err := run(t, "", "send", "alice", "hello", "there")
	if err == nil || !strings.Contains(err.Error(), "quote") || !strings.Contains(err.Error(), `"hello there"`) {
		t.Errorf("send with 3 arguments: %v", err)
	}
}

// --timeout without --wait is refused before anything is sent.
func TestSendTimeoutNeedsWait(t *testing.T) {
	dir := shortDir(t)
	_, err := run(t, "", "send", "alice", "hi", "--timeout", "1s", "--config", writeConfig(t, dir, ""))
	if err == nil || !strings.Contains(err.Error(), "--timeout needs --wait") {
		t.Errorf("send --timeout without --wait: %v", err)
	}
}

func TestConfigShowMasksSecrets(t *testing.T) {
	dir := shortDir(t)
	cfg := writeConfig(t, dir, `webhooks:
  - url: https://bridge.example/hook
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
agent:
  env:
    ANTHROPIC_API_KEY: sk-very-secret
    ANTHROPIC_BASE_URL: http://127.0.0.1:9
api:
  listen: 127.0.0.1:8787
  token_file: /etc/dispatch/token
health:
  idle_timeout: 90m
`)
	out, err := run(t, "", "config", "show", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "sk-very-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("config show prints a secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"(masked)", "http://127.0.0.1:9", "token_file: /etc/dispatch/token", "idle_timeout: 1h30m0s",
		"state_dir: " + filepath.Join(dir, "state"), "check_interval: 5m0s", "max_attempts: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}
	// What it prints loads back to the same configuration.
	shown := filepath.Join(dir, "shown.yaml")
	if err := os.WriteFile(shown, []byte(strings.ReplaceAll(out, "(masked)", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "", "config", "show", "--config", shown); err != nil {
		t.Errorf("config show's output does not load: %v\n%s", err, out)
	}
}

// Tables line up by display width: emoji and CJK take two columns.
func TestTableAlignsWideCharacters(t *testing.T) {
	tb := newTable("CHAT", "STATE")
	tb.add("alice", "idle")
	tb.add("家族-🍕", "busy")
	tb.add("e\u0301clair", "idle") // a combining accent takes no column
	tb.add("bad\x1b[2Jchat", "idle")
	var b bytes.Buffer
	if err := tb.print(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	col := -1
	for _, l := range lines {
		i := strings.LastIndex(l, "  ")
		w := runewidth.StringWidth(l[:i+2])
		if col >= 0 && w != col {
			t.Errorf("second column at %d, want %d:\n%s", w, col, b.String())
		}
		col = w
	}
	if strings.Contains(b.String(), "\x1b") || !strings.Contains(b.String(), `bad\x1b[2Jchat`) {
		t.Errorf("a control character was not escaped:\n%q", b.String())
	}
	if got := cell("家族家族家族", 7); runewidth.StringWidth(got) > 7 || !strings.HasSuffix(got, "…") {
		t.Errorf("cell clips to %q (width %d)", got, runewidth.StringWidth(got))
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{now.Add(-12 * time.Second), "12s ago"},
		{now.Add(-3*time.Minute - 10*time.Second), "3m ago"},
		{now.Add(-5 * time.Hour), "5h ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
		{now.Add(time.Second), "just now"},
	} {
		if got := age(tt.at.Format(time.RFC3339Nano), now); got != tt.want {
			t.Errorf("age(%s) = %q, want %q", tt.at, got, tt.want)
		}
	}
	if got := age("not a time", now); got != "not a time" {
		t.Errorf("age of garbage = %q", got)
	}
}

func TestTailOffset(t *testing.T) {
	dir := t.TempDir()
	var all []string
	for i := range 50000 {
		all = append(all, strings.Repeat("x", i%70)+" line")
	}
	for _, tt := range []struct {
		name, content string
		n             int
		want          string
	}{
		{"short file", "a\nb\n", 10, "a\nb\n"},
		{"last two", "a\nb\nc\n", 2, "b\nc\n"},
		{"no final newline", "a\nb\nc", 2, "b\nc"},
		{"empty", "", 3, ""},
		{"large", strings.Join(all, "\n") + "\n", 3, strings.Join(all[len(all)-3:], "\n") + "\n"},
	} {
		p := filepath.Join(dir, "log")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := printLog(t.Context(), p, tt.n, false, &b); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("%s: last %d lines = %q, want %q", tt.name, tt.n, b.String(), tt.want)
		}
	}
}

// shortDir is a temporary directory with a path short enough for a unix
// socket below it.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dcli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "dispatch.yaml")
	if err := os.WriteFile(p, []byte("state_dir: "+filepath.Join(dir, "state")+"\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShellArg(t *testing.T) {
	for in, want := range map[string]string{
		"alice":       "alice",
		"bridge-42":   "bridge-42",
		"family chat": `'family chat'`,
		"it's":        `'it'\''s'`,
		"a\x1b[2Jb":   `'a\x1b[2Jb'`,
		"":            `''`,
	} {
		if got := shellArg(in); got != want {
			t.Errorf("shellArg(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"bob", "bobb", 1}, {"alice", "alcie", 2}, {"", "ab", 2}, {"家族", "家", 1}, {"same", "same", 0}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
