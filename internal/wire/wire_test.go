package wire

import (
	"strings"
	"testing"
)

// The one chat id rule, as the API and the config apply it.
func TestChatIDProblem(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want string // "" valid, else a part of the problem
	}{
		{"alice", ""},
		{"+15551234567", ""},
		{"family group", ""},
		{"家族-🍕", ""},
		{"", "required"},
		{strings.Repeat("a", MaxChatID), ""},
		{strings.Repeat("a", MaxChatID+1), "limit is 256"},
		{" a", "white space"},
		{"a ", "white space"},
		{"   ", "white space"},
		{"a\tb", "control"},
		{"a\u00a0b", "non-printable"}, // a no-break space inside
		{"\u00a0", "non-printable"},
		{"a\u2028b", "non-printable"},
		{"a\x9bb", "UTF-8"},
		{"a\u009bb", "non-printable"},
	} {
		got := ChatIDProblem(tt.id)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("ChatIDProblem(%q) = %q, want %q", tt.id, got, tt.want)
		}
		if err := ValidChatID(tt.id); (err == nil) != (tt.want == "") {
			t.Errorf("ValidChatID(%q) = %v", tt.id, err)
		} else if err != nil && !strings.HasPrefix(err.Error(), "chat_id ") {
			t.Errorf("ValidChatID(%q) = %q, want it to name chat_id", tt.id, err)
		}
	}
}

func TestSocketPathProblem(t *testing.T) {
	if p := SocketPathProblem("/run/dispatch.sock"); p != "" {
		t.Errorf("short path: %s", p)
	}
	long := "/" + strings.Repeat("s", MaxSocketPath())
	if p := SocketPathProblem(long); !strings.Contains(p, "unix socket limit") {
		t.Errorf("long path: %q", p)
	}
}
