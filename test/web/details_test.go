package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// holdFetch runs in every document before the page's own script: it holds
// the page's first status and dead-letter requests until the test lets
// them go (window.__release()), and answers /api/dead and /api/message
// from window.__fakeDead when the test sets it.
const holdFetch = `(() => {
	const real = window.fetch.bind(window);
	const held = [];
	let open = false;
	window.__release = () => { open = true; held.splice(0).forEach(go => go()); };
	window.fetch = (u, o) => {
		const p = String(u);
		const fake = window.__fakeDead;
		if (fake && p.startsWith('/api/dead')) return Promise.resolve(new Response(JSON.stringify({messages: [fake.listed]}), {headers: {'Content-Type': 'application/json'}}));
		if (fake && p.startsWith('/api/message')) return Promise.resolve(new Response(JSON.stringify(fake.full), {headers: {'Content-Type': 'application/json'}}));
		if (!open && (p.startsWith('/api/status') || p.startsWith('/api/dead'))) return new Promise(res => held.push(() => res(real(u, o))));
		return real(u, o);
	};
})()`

// What a newcomer tripped on in the page: "none" before any data came, a
// long error cut with no mark and no way to read it, timeline entries cut
// mid-line on a phone, the good news "api up" in red, and a paused chat
// with waiting messages as a green tick.
func TestStatusPageDetails(t *testing.T) {
	b := newBrowser(t)
	shots := artifacts(t)
	d := daemontest.Start(t, daemontest.Set(map[string]any{
		"health.first_check_delay": "1h",
		"health.check_interval":    "1h",
		"health.idle_timeout":      "1h",
	}))
	d.WaitMessage(d.Send("alice", "hello"), "done", 15*time.Second)
	if _, errOut, code := d.Run("sessions", "pause", "alice"); code != 0 {
		t.Fatalf("pause: %d %s", code, errOut)
	}
	d.Send("alice", "one while paused")
	d.Send("alice", "two while paused")
	w := startWeb(t, d)
	b.must("hold the first data", chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := page.AddScriptToEvaluateOnNewDocument(holdFetch).Do(ctx)
		return err
	}))
	b.must("open the page", chromedp.Navigate(w.URL))

	t.Run("loading before the first data", func(t *testing.T) {
		b.waitJS(`document.querySelector('#stream').classList.contains('live')`, 10*time.Second, "the stream")
		var got struct{ Daemon, Sessions, Dead string }
		if err := b.eval(`({Daemon: document.querySelector('#daemon').textContent,
			Sessions: document.querySelector('#no-sessions').hidden ? '' : document.querySelector('#no-sessions').textContent,
			Dead: document.querySelector('#no-dead').hidden ? '' : document.querySelector('#no-dead').textContent})`, &got); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got.Sessions, "loading") || !strings.Contains(got.Dead, "loading") || strings.Contains(got.Dead, "none") {
			t.Errorf("before the first data: sessions %q, dead letters %q, daemon %q; want loading…", got.Sessions, got.Dead, got.Daemon)
		}
		t.Logf("saved %s", b.screenshot(shots, "status-loading.png"))
		var ok bool
		_ = b.eval(`window.__release(), true`, &ok)
		b.waitJS(`document.querySelector('#sessions tbody tr[data-chat=alice]') && document.querySelector('#no-dead').textContent === 'none'`,
			10*time.Second, "the data to arrive")
	})

	t.Run("paused chat with waiting messages", func(t *testing.T) {
		cell := `document.querySelector('#sessions tbody tr[data-chat=alice] td[data-label=health]')`
		b.waitJS(cell+`.textContent.includes('2 waiting')`, 10*time.Second, "alice shown paused with 2 waiting")
		var got struct {
			Text, Class, Title string
		}
		if err := b.eval(`({Text: `+cell+`.textContent, Class: `+cell+`.className, Title: `+cell+`.title})`, &got); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got.Text, "✓") || got.Class != "warn" || !strings.Contains(got.Title, "dispatch sessions resume alice") {
			t.Errorf("paused alice's health: %q class %q title %q; want no tick, amber, the resume command", got.Text, got.Class, got.Title)
		}
	})

	t.Run("good news is not red", func(t *testing.T) {
		var colors struct{ Up, Down, Ok, Bad string }
		if err := b.eval(`(() => {
			const seq = (state.lastSeq || 0) + 1000;
			onEvent({data: JSON.stringify({seq: seq, type: 'api_down', at: new Date().toISOString(), reason: 'connection refused'})});
			onEvent({data: JSON.stringify({seq: seq + 1, type: 'api_up', at: new Date().toISOString(), reason: 'answered again after 42s'})});
			const li = (t) => document.querySelector('#timeline li[data-type=' + t + '] .text');
			const probe = (cls) => { const e = document.createElement('span'); e.className = cls; document.body.append(e); const c = getComputedStyle(e).color; e.remove(); return c; };
			return {Up: getComputedStyle(li('api_up')).color, Down: getComputedStyle(li('api_down')).color, Ok: probe('ok'), Bad: probe('err')};
		})()`, &colors); err != nil {
			t.Fatal(err)
		}
		if colors.Up == colors.Bad || colors.Down != colors.Bad {
			t.Errorf("api up is %s, api down %s; red is %s", colors.Up, colors.Down, colors.Bad)
		}
	})

	t.Run("long error: marked, and readable in full", func(t *testing.T) {
		long := strings.Repeat("the agent said something long about what went wrong; ", 100)
		var ok bool
		if err := b.eval(`(() => {
			const full = `+jsString(long)+`;
			window.__fakeDead = {
				listed: {id: 'm-long', chat_id: 'alice', state: 'dead', attempts: 3, text: 'hi', text_bytes: 2,
					error: full.slice(0, 200), error_bytes: full.length, truncated: true},
				full: {id: 'm-long', chat_id: 'alice', state: 'dead', attempts: 3, text: 'hi', error: full},
			};
			refreshDead();
			return true;
		})()`, &ok); err != nil {
			t.Fatal(err)
		}
		row := `document.querySelector('#dead tr[data-id="m-long"]')`
		b.waitJS(row, 5*time.Second, "the dead letter")
		var cut string
		_ = b.eval(row+`.querySelector('td.err .text').textContent`, &cut)
		if !strings.HasSuffix(cut, "…") || len(cut) > 210 {
			t.Errorf("the clipped error %q has no mark", cut)
		}
		b.must("show all", chromedp.Click(`#dead tr[data-id="m-long"] button.more`, chromedp.ByQuery))
		b.waitJS(row+`.querySelector('td.err .text').textContent.length === `+jsString(long)+`.length`, 5*time.Second, "the whole error")
		_ = b.eval(`window.__fakeDead = null, true`, &ok)
	})

	t.Run("phone: whole lines, and more", func(t *testing.T) {
		b.must("phone", emulation.SetDeviceMetricsOverride(390, 844, 2, true))
		var lines []string
		for i := 1; i <= 30; i++ {
			lines = append(lines, "line "+strings.Repeat("word ", i%7+1))
		}
		text := strings.Join(lines, "\n")
		var got struct {
			Height, Line, Full float64
			More               bool
		}
		if err := b.eval(`new Promise(done => {
			onEvent({data: JSON.stringify({seq: (state.lastSeq || 0) + 1, type: 'reply', at: new Date().toISOString(), chat_id: 'alice', text: `+jsString(text)+`})});
			const e = document.querySelector('#timeline li .text');
			requestAnimationFrame(() => requestAnimationFrame(() => done({
				Height: e.clientHeight, Line: parseFloat(getComputedStyle(e).lineHeight),
				Full: e.scrollHeight, More: !!(e.nextElementSibling && e.nextElementSibling.classList.contains('more'))})));
		})`, &got); err != nil {
			t.Fatal(err)
		}
		if n := got.Height / got.Line; got.Line == 0 || n-float64(int(n+0.01)) > 0.02 {
			t.Errorf("the cut entry is %.1fpx high with %.1fpx lines: %.2f lines, a line cut in half", got.Height, got.Line, n)
		}
		if !got.More || got.Full <= got.Height {
			t.Errorf("a cut entry (%.0f of %.0fpx) has no 'more' button", got.Height, got.Full)
		}
		t.Logf("saved %s", b.screenshot(shots, "status-phone-details.png"))
		b.must("more", chromedp.Click(`#timeline li button.more`, chromedp.ByQuery))
		b.waitJS(`(() => { const e = document.querySelector('#timeline li .text'); return e.clientHeight >= e.scrollHeight; })()`, 5*time.Second, "the whole entry")
		b.must("back to desktop", emulation.ClearDeviceMetricsOverride())
	})
}
