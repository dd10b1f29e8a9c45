package security

import (
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// A message (and so the echo agent's reply) that carries terminal escapes —
// clear the screen, write the clipboard through OSC 52 — reaches the
// operator's terminal escaped, in --wait output and in every table.
func TestTerminalEscapesAreEscaped(t *testing.T) {
	d := daemontest.Start(t, daemontest.Set(quiet))
	const evil = "\x1b[2J\x1b[H\x1b]52;c;ZWNobyBwd25lZA==\x07 hello\r\x9b31m"
	out, errOut, code := d.Run("send", "alice", evil, "--wait")
	if code != 0 {
		t.Fatalf("send --wait: exit %d: %s", code, errOut)
	}
	check := func(what, out string) {
		t.Helper()
		for _, bad := range []string{"\x1b", "\x07", "\r", "\u009b"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s prints a raw %q: %q", what, bad, out)
			}
		}
	}
	check("send --wait", out)
	if !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, "hello") {
		t.Errorf("send --wait does not show the escaped text: %q", out)
	}
	id := strings.TrimSpace(func() string { o, _, _ := d.Run("send", "alice", evil); return o }())
	d.WaitMessage(id, "done", 10e9)
	for _, args := range [][]string{
		{"queue", "list", "--state", "done"},
		{"queue", "show", id},
		{"logs", "alice"},
	} {
		out, errOut, code := d.Run(args...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
		check(strings.Join(args, " "), out)
	}
	if _, _, code := d.Run("queue", "show", "no-such-id"); code != 1 {
		t.Errorf("queue show of an unknown id: exit %d, want 1", code)
	}
}
