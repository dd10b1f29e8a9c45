package web

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// claudeBin is the pinned Claude Code CLI, or a skip (a failure with
// DISPATCH_REQUIRE_CLAUDE=1).
func claudeBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DISPATCH_CLAUDE_BIN")
	if bin == "" {
		bin = filepath.Join(daemontest.ModuleRoot(t), "tools", "claude-code", "node_modules", ".bin", "claude")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		msg := fmt.Sprintf("claude CLI not installed: run scripts/install-tools.sh (looked for %s)", bin)
		if os.Getenv("DISPATCH_REQUIRE_CLAUDE") == "1" {
			t.Fatal(msg + "; DISPATCH_REQUIRE_CLAUDE=1")
		}
		t.Skip(msg)
	}
	abs, _ := filepath.Abs(bin)
	return abs
}

// TestPermissionButtons: the real CLI asks (agent.permissions: ask); the
// request shows on the page with its buttons, a click on allow (through
// the page's session token) lets the tool run and the row goes away; the
// request and the decision are in the timeline.
func TestPermissionButtons(t *testing.T) {
	b := newBrowser(t)
	bin := claudeBin(t)
	fake := fakeapi.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	home, dir := t.TempDir(), t.TempDir()
	d := daemontest.Start(t, daemontest.Set(map[string]any{
		"agent.command":                bin,
		"agent.permissions":            "ask",
		"agent.dir":                    dir,
		"agent.stop_grace":             "2s",
		"agent.env.ANTHROPIC_BASE_URL": fake.URL(),
		"agent.env.ANTHROPIC_API_KEY":  "sk-ant-dummy-for-the-fake-api",
		"agent.env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"agent.env.DISABLE_AUTOUPDATER":                      "1",
		"agent.env.CLAUDE_CODE_MAX_RETRIES":                  "0",
		"agent.env.HOME":                                     home,
		"agent.env.XDG_CONFIG_HOME":                          filepath.Join(home, ".config"),
		"health.first_turn_stuck_timeout":                    "60s",
	}))
	w := startWeb(t, d)
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	b.waitJS(`document.querySelector('#daemon').textContent.includes('pid ')`, 10*time.Second, "the page to connect")

	id := d.Send("pat", "please make the file\n"+fakeapi.ToolMarker+` Bash {"command":"touch clicked.txt"}`)
	row := `document.querySelector('#perms tbody tr')`
	b.waitJS(row+` && `+row+`.textContent.includes('touch clicked.txt')`, 60*time.Second, "the request on the page")
	b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=permission_request]')].some(li => li.textContent.includes('touch clicked.txt'))`,
		5*time.Second, "the request in the timeline")
	b.screenshot(artifacts(t), "permission-request.png")
	var ok bool
	if err := b.eval(row+`.querySelector('button.allow').click(), true`, &ok); err != nil {
		t.Fatal(err)
	}
	var m api.MessageOut
	daemontest.WaitFor(t, func() bool { m = message(d, id); return m.State == "done" }, 60*time.Second, "the allowed turn to finish")
	if !strings.HasPrefix(m.Reply, "fake reply after tools: Bash ok:") {
		t.Errorf("reply %q", m.Reply)
	}
	if _, err := os.Stat(filepath.Join(claude.ChatDir(dir, "pat"), "clicked.txt")); err != nil {
		t.Errorf("the allowed touch did not run: %v", err)
	}
	b.waitJS(`!`+row, 10*time.Second, "the answered request to leave the page")
	b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=permission_decided]')].some(li => li.textContent.includes('allow by web'))`,
		5*time.Second, "the decision in the timeline")
}
