package permission

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSummary(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, tt := range []struct {
		tool, input, want string
	}{
		{"Bash", `{"command":"touch x"}`, "touch x"},
		{"Bash", `{"command":"cd /tmp &&\n  make\tall","description":"build"}`, "cd /tmp && make all"},
		{"Bash", `{"command":"printf '\u001b[2J'"}`, `printf '\x1b[2J'`},
		{"Bash", `{"command":"echo \u202eevil"}`, `echo \u202eevil`},
		{"Write", `{"file_path":"/w/a.txt","content":"hello\n"}`, "/w/a.txt (6 B)"},
		{"Write", `{"file_path":"/w/big","content":"` + strings.Repeat("x", 1536) + `"}`, "/w/big (1.5 KB)"},
		{"Edit", `{"file_path":"/w/a.go","old_string":"ab","new_string":"abc"}`, "/w/a.go (-2 B +3 B)"},
		{"MultiEdit", `{"file_path":"/w/a.go","edits":[{},{}]}`, "/w/a.go (2 edits)"},
		{"Read", `{"file_path":"/etc/hosts"}`, "/etc/hosts"},
		{"Grep", `{"pattern":"TODO","path":"internal"}`, "TODO in internal"},
		{"Glob", `{"pattern":"**/*.go"}`, "**/*.go"},
		{"WebFetch", `{"url":"https://example.com/x","prompt":"summarize"}`, "https://example.com/x"},
		{"WebSearch", `{"query":"go 1.26"}`, "go 1.26"},
		{"NotebookEdit", `{"notebook_path":"/w/n.ipynb"}`, "/w/n.ipynb"},
		{"Task", `{"description":"find the bug","prompt":"…"}`, "find the bug"},
		{"AskUserQuestion", `{"questions":[{"question":"Which branch?"}]}`, "Which branch?"},
		{"mcp__db__query", `{"sql":"select 1","limit":5}`, `{"limit":5,"sql":"select 1"}`},
		{"Bash", `{}`, ""},
		{"Bash", `not json`, "not json"},
		{"Unknown", ``, ""},
		{"Bash", `{"command":"` + long + `"}`, strings.Repeat("a", MaxSummary-1) + "…"},
	} {
		got := Summary(tt.tool, json.RawMessage(tt.input))
		if got != tt.want {
			t.Errorf("Summary(%s, %.40s) = %q, want %q", tt.tool, tt.input, got, tt.want)
		}
		if n := utf8.RuneCountInString(got); n > MaxSummary {
			t.Errorf("Summary(%s) has %d runes", tt.tool, n)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) {
				t.Errorf("Summary(%s) = %q holds control %U", tt.tool, got, r)
			}
		}
	}
}

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"}, {"abcd", 3, "ab…"}, {"äöüß", 2, "ä…"}, {"ab", 1, "ab"[:0] + "…"}, {"", 1, ""},
	} {
		if got := Clip(tt.s, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestParseDecision(t *testing.T) {
	for _, s := range []string{"allow", "allow_always", "deny"} {
		if d, err := ParseDecision(s); err != nil || string(d) != s {
			t.Errorf("ParseDecision(%q) = %q, %v", s, d, err)
		}
	}
	for _, s := range []string{"expired", "", "Allow", "yes"} {
		if _, err := ParseDecision(s); err == nil {
			t.Errorf("ParseDecision(%q) accepted", s)
		}
	}
	for d, allows := range map[Decision]bool{Allow: true, AllowAlways: true, Deny: false, Expired: false} {
		if d.Allows() != allows || !d.Valid() {
			t.Errorf("%s: Allows %v Valid %v", d, d.Allows(), d.Valid())
		}
	}
}

func TestExpiry(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	if got := ExpiresAt(t0, 0); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("default expiry %v", got)
	}
	r := Request{ExpiresAt: ExpiresAt(t0, time.Minute)}
	for _, tt := range []struct {
		at   time.Duration
		want bool
	}{{0, false}, {time.Minute - time.Nanosecond, false}, {time.Minute, true}, {time.Hour, true}} {
		if got := r.IsExpired(t0.Add(tt.at)); got != tt.want {
			t.Errorf("IsExpired at +%v = %v", tt.at, got)
		}
	}
	r.Decision = Allow
	if r.IsExpired(t0.Add(time.Hour)) {
		t.Error("a decided request expired")
	}
}

func TestClose(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	open := Request{ID: "p1", ChatID: "c", Tool: "Bash", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	decided := open
	decided.Decision, decided.DecidedBy, decided.DecidedAt = Deny, "cli", t0

	for _, tt := range []struct {
		name    string
		r       Request
		d       Decision
		by      string
		reason  string
		at      time.Duration
		err     error
		want    Decision
		wantBy  string
		wantWhy string
	}{
		{"allow", open, Allow, "cli", "", time.Second, nil, Allow, "cli", ""},
		{"allow_always", open, AllowAlways, "api:bridge", "", time.Second, nil, AllowAlways, "api:bridge", ""},
		{"deny", open, Deny, "telegram:42", "", time.Second, nil, Deny, "telegram:42", ""},
		{"just before expiry", open, Allow, "cli", "", time.Minute - time.Nanosecond, nil, Allow, "cli", ""},
		{"at expiry the clock wins", open, Allow, "cli", "", time.Minute, ErrClosed, Expired, ByDispatch, ReasonTimeout},
		{"expire", open, Expired, "", ReasonAgentGone, time.Second, nil, Expired, ByDispatch, ReasonAgentGone},
		{"second answer", decided, Allow, "cli", "", time.Second, ErrClosed, Deny, "cli", ""},
		{"expire a decided one", decided, Expired, "", ReasonRestart, time.Second, ErrClosed, Deny, "cli", ""},
		{"not a decision", open, Decision("maybe"), "cli", "", time.Second, ErrInvalid, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Close(tt.r, tt.d, tt.by, tt.reason, t0.Add(tt.at))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got.Decision != tt.want || got.DecidedBy != tt.wantBy || got.Reason != tt.wantWhy {
				t.Errorf("closed as %q by %q (%q), want %q by %q (%q)", got.Decision, got.DecidedBy, got.Reason, tt.want, tt.wantBy, tt.wantWhy)
			}
		})
	}
}

func TestRuleMatch(t *testing.T) {
	rules := []Rule{{ChatID: "c1", Tool: "Bash"}, {ChatID: "c2", Tool: "Write"}, {ChatID: "", Tool: "Read"}, {ChatID: "c3", Tool: ""}}
	for _, tt := range []struct {
		chat, tool string
		want       bool
	}{
		{"c1", "Bash", true},
		{"c1", "Write", false}, // another tool
		{"c2", "Bash", false},  // another chat's rule
		{"c2", "Write", true},
		{"c1", "bash", false}, // names are exact
		{"x", "Read", false},  // a rule without a chat matches nothing
		{"", "Read", false},
		{"c3", "", false}, // nor one without a tool
	} {
		if _, got := Match(rules, tt.chat, tt.tool); got != tt.want {
			t.Errorf("Match(%s, %s) = %v", tt.chat, tt.tool, got)
		}
	}
	r := Request{ChatID: "c9", Tool: "Edit", DecidedBy: "cli", DecidedAt: time.Unix(5, 0)}
	if rl := RuleFor(r); !rl.Matches("c9", "Edit") || rl.CreatedBy != "cli" || !rl.CreatedAt.Equal(time.Unix(5, 0)) {
		t.Errorf("RuleFor = %+v", rl)
	}
}
