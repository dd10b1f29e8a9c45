package web

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestChannelsSection: with no channel configured the page has no
// Channels section; with a Telegram channel it shows the bot, connected
// in green, the last update and the deliveries, and turns red when the
// Bot API goes down.
func TestChannelsSection(t *testing.T) {
	b := newBrowser(t)
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	tok := filepath.Join(t.TempDir(), "telegram.token")
	if err := os.WriteFile(tok, []byte(fake.Token()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{
		Set: map[string]any{"agent.kind": "echo"},
		YAML: fmt.Sprintf(`
channels:
  - name: pocket
    kind: telegram
    token_file: %s
    api_url: %s
    allow: [42]
`, tok, fake.URL()),
	})
	if _, err := fake.SendText(faketelegram.User{ID: 42, FirstName: "Ann"}, "hello from the pocket"); err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, func() bool { return len(fake.Sent(42)) == 1 }, 30*time.Second, "the reply")
	w := startWeb(t, d)
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	row := `document.querySelector('#channels tbody tr[data-channel=pocket]')`
	b.waitJS(`!document.querySelector('#channels-section').hidden && `+row+` && `+row+`.textContent.includes('@fake_dispatch_bot')`,
		15*time.Second, "the channel on the page")
	var got struct {
		Cells     []string
		Connected string
		NodeShown bool
	}
	if err := b.eval(`({
		Cells: [...`+row+`.cells].map(c => c.textContent),
		Connected: `+row+`.cells[3].className,
		NodeShown: !document.querySelector('#channels th.node').hidden,
	})`, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Cells) != 8 || got.Cells[0] != "pocket" || got.Cells[1] != "telegram" || got.Cells[2] != "@fake_dispatch_bot" ||
		got.Cells[3] != "✓ connected" || got.Connected != "ok" || got.Cells[4] == "–" || got.Cells[5] != "0" || got.Cells[6] != "0" ||
		got.Cells[7] != "–" || got.NodeShown {
		t.Errorf("channel row %+v: want pocket, telegram, @fake_dispatch_bot, ✓ connected (green), a last update, 0, 0, –, no node column", got)
	}
	b.screenshot(artifacts(t), "channels.png")
	fake.SetMode(faketelegram.Mode502)
	b.waitJS(row+`.cells[3].className === 'bad'`, 60*time.Second, "the channel shown disconnected (red)")
	fake.SetMode(faketelegram.ModeUp)
	b.waitJS(row+`.cells[3].className === 'ok'`, 60*time.Second, "the channel shown connected again")
}

// Without a channel the section stays hidden.
func TestChannelsSectionHidden(t *testing.T) {
	b := newBrowser(t)
	d := daemontest.Start(t, daemontest.Options{})
	w := startWeb(t, d)
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	b.waitJS(`document.querySelector('#daemon').textContent.includes('pid ')`, 10*time.Second, "the page to connect")
	time.Sleep(500 * time.Millisecond) // the channels' first refresh
	var hidden bool
	if err := b.eval(`document.querySelector('#channels-section').hidden`, &hidden); err != nil || !hidden {
		t.Errorf("channels section shown without channels (%v)", err)
	}
}
