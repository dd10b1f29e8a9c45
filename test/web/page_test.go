package web

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// A chat id that would run script if the page ever put it in as markup.
const evilChat = `<script>alert("chat")</script><img src=x onerror=alert(1)>`

// The whole page in one browser session (the secret works once): the
// sessions table, the live timeline, a dead letter retried from the page,
// the chat view, the refusals, screenshots, the page's weight and first
// paint, and last a daemon restart the page lives through.
func TestStatusPage(t *testing.T) {
	b := newBrowser(t) // skips (or fails on CI) without chromium
	shots := artifacts(t)
	// While this file exists, a message with POISON crashes the agent.
	poison := filepath.Join(t.TempDir(), "poison")
	d := daemontest.Start(t, daemontest.Set(map[string]any{
		"health.first_check_delay":   "1h", // no reaping: the table shows live sessions
		"health.check_interval":      "1h",
		"health.idle_timeout":        "1h",
		"queue.max_attempts":         2,
		"agent.env.STUB_POISON_FILE": poison,
	}))

	for _, chat := range []string{"alice", "bob", evilChat} {
		d.WaitMessage(d.Send(chat, "hello from "+chat), "done", 15*time.Second)
	}
	w := startWeb(t, d)

	start := time.Now()
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	b.waitJS(`document.querySelectorAll('#sessions tbody tr').length >= 3`, 10*time.Second, "the sessions table to fill")
	t.Logf("sessions table filled %s after the page was opened", time.Since(start).Round(time.Millisecond))

	t.Run("sessions table", func(t *testing.T) {
		var chats []string
		if err := b.eval(`[...document.querySelectorAll('#sessions tbody tr')].map(r => r.querySelector('button').textContent)`, &chats); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"alice", "bob", evilChat} {
			if !contains(chats, want) {
				t.Errorf("sessions table %q lacks %q", chats, want)
			}
		}
		var url string
		if err := b.eval(`location.href`, &url); err != nil || strings.Contains(url, "secret") {
			t.Errorf("the address bar still holds the secret: %q", url)
		}
		var daemon string
		_ = b.eval(`document.querySelector('#daemon').textContent`, &daemon)
		if !strings.Contains(daemon, "pid ") || !strings.Contains(daemon, "API up") || !strings.Contains(daemon, "dead") {
			t.Errorf("daemon line = %q", daemon)
		}
	})

	t.Run("filter, sort, memory", func(t *testing.T) {
		var got struct {
			Filtered     []string
			Sorted       []string
			MemHidden    bool
			MemShown     bool
			MemText      string
			Unhealthy1st string
		}
		// One synchronous script, so that the page's own refresh cannot
		// run in between: type a filter, sort by chat descending, and
		// give a session the memory figure that status reports for live
		// agents (the column appears only when the field exists) and an
		// unhealthy verdict (it goes first).
		if err := b.eval(`(() => {
			const chats = () => [...document.querySelectorAll('#sessions tbody tr')].map(r => r.dataset.chat);
			const f = document.querySelector('#filter');
			f.value = 'bo'; f.dispatchEvent(new Event('input'));
			const filtered = chats();
			f.value = ''; f.dispatchEvent(new Event('input'));
			const th = document.querySelector('#sessions th[data-key=chat_id]');
			th.click(); th.click();
			const sorted = chats();
			th.click(); state.sortKey = ''; state.sortDir = 1;
			// The live agents' memory is real now: take it away to see
			// the column hide, then give bob some.
			state.status.sessions.forEach(s => { delete s.rss_bytes; });
			renderSessions();
			const memHidden = document.querySelector('#sessions th.mem').hidden;
			state.status.sessions.forEach(s => { if (s.chat_id === 'bob') { s.rss_bytes = 200 * 1048576; s.healthy = false; s.health_reason = 'dead'; } });
			renderSessions();
			const row = document.querySelector('#sessions tbody tr[data-chat=bob]');
			return {Filtered: filtered, Sorted: sorted, MemHidden: memHidden,
				MemShown: !document.querySelector('#sessions th.mem').hidden,
				MemText: row.lastElementChild.textContent, Unhealthy1st: chats()[0]};
		})()`, &got); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got.Filtered, ",") != "bob" {
			t.Errorf("filter 'bo' shows %q", got.Filtered)
		}
		if len(got.Sorted) < 3 || got.Sorted[0] != "bob" || got.Sorted[len(got.Sorted)-1] != evilChat {
			t.Errorf("sorted by chat, descending: %q", got.Sorted)
		}
		if !got.MemHidden || !got.MemShown || got.MemText != "200 MiB" {
			t.Errorf("memory column: hidden without rss_bytes %v, shown with it %v, text %q", got.MemHidden, got.MemShown, got.MemText)
		}
		if got.Unhealthy1st != "bob" {
			t.Errorf("first row %q, want the unhealthy bob", got.Unhealthy1st)
		}
	})

	t.Run("chat id with markup is text", func(t *testing.T) {
		var n struct {
			Scripts, Imgs int
			Text          string
		}
		if err := b.eval(`({Scripts: document.querySelectorAll('script').length,
			Imgs: document.querySelectorAll('img').length,
			Text: [...document.querySelectorAll('#sessions tbody button')].map(b => b.textContent).find(s => s.startsWith('<script>')) || ''})`, &n); err != nil {
			t.Fatal(err)
		}
		if n.Scripts != 1 || n.Imgs != 0 || n.Text != evilChat {
			t.Errorf("scripts %d (want only app.js), imgs %d (want 0), chat shown as %q (want the literal text)", n.Scripts, n.Imgs, n.Text)
		}
		select {
		case msg := <-b.dialogs:
			t.Errorf("a dialog opened: %q", msg)
		default:
		}
	})

	t.Run("timeline live", func(t *testing.T) {
		b.waitJS(`document.querySelector('#stream').classList.contains('live')`, 5*time.Second, "the event stream to be live")
		var marker bool
		_ = b.eval(`window.__noReload = true`, &marker)
		id, errOut, code := d.Run("send", "alice", "live hello")
		sent := time.Now()
		if code != 0 {
			t.Fatalf("dispatch send: exit %d: %s", code, errOut)
		}
		b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=reply]')].some(li => li.textContent.includes('echo: live hello'))`,
			5*time.Second, "the reply to appear in the timeline")
		took := time.Since(sent)
		t.Logf("reply to %s in the timeline %s after `dispatch send` returned", strings.TrimSpace(id), took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("the reply took %s to appear in the timeline, want within a second", took)
		}
		if err := b.eval(`window.__noReload === true`, &marker); err != nil || !marker {
			t.Error("the page was reloaded")
		}
	})

	t.Run("dead letter retried from the page", func(t *testing.T) {
		if err := os.WriteFile(poison, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		id := d.Send("carol", "POISON pill")
		d.WaitMessage(id, "dead", 30*time.Second)
		row := `document.querySelector('#dead tr[data-id=` + jsString(id) + `]')`
		b.waitJS(row, 5*time.Second, "the dead letter to be listed")
		b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=dead_letter]')].length > 0`, 5*time.Second, "the dead letter in the timeline")
		if err := os.Remove(poison); err != nil {
			t.Fatal(err)
		}
		b.waitJS(row+`.querySelector('button.retry')`, 2*time.Second, "the retry button")
		var ok bool
		if err := b.eval(row+`.querySelector('button.retry').click(), true`, &ok); err != nil {
			t.Fatal(err)
		}
		// The click's request is on its way: wait for the answer.
		var m api.MessageOut
		daemontest.WaitFor(t, func() bool {
			m = message(d, id)
			return m.State == "done"
		}, 30*time.Second, "the retried message to be answered")
		if !strings.Contains(m.Reply, "POISON pill") {
			t.Errorf("reply %q", m.Reply)
		}
		b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=reply]')].some(li => li.textContent.includes('POISON pill'))`, 5*time.Second, "the answer in the timeline")
		b.waitJS(`!`+row, 5*time.Second, "the dead letter to leave the list")
	})

	t.Run("chat view", func(t *testing.T) {
		b.clickUntil(`#sessions tbody tr[data-chat="alice"] button`,
			`document.querySelector('#chat-exchanges').textContent.includes('live hello') && document.querySelector('#chat-exchanges').textContent.includes('echo: live hello')`,
			10*time.Second, "alice's recent messages and replies")
	})

	t.Run("refused without the token", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second}
		for _, u := range []string{w.URL, w.Origin + "/api/status", w.Origin + "/api/events", w.Origin + "/api/chat?chat=alice"} {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.StatusUnauthorized
			if u == w.URL {
				want = http.StatusOK // the page itself, which holds no data
			}
			if resp.StatusCode != want {
				t.Errorf("GET %s without the token: %d %q", u, resp.StatusCode, body)
			}
		}
		// From the page itself: a wrong or missing token is refused, and
		// nothing reaches the daemon.
		for name, hdr := range map[string]string{
			"wrong": `{'Content-Type': 'application/json', 'Authorization': 'Bearer wrong'}`,
			"none":  `{'Content-Type': 'application/json'}`,
		} {
			var code int
			if err := b.eval(`fetch('/api/drop', {method: 'POST', headers: `+hdr+`, body: JSON.stringify({id: 'x'})}).then(r => r.status)`, &code); err != nil {
				t.Fatal(err)
			}
			if code != http.StatusUnauthorized {
				t.Errorf("POST with %s token: %d, want 401", name, code)
			}
		}
	})

	t.Run("weight and first paint", func(t *testing.T) {
		// Five loads of the page in its tab (the session token is kept); the best
		// is the page's own cost, the rest is a busy machine. When the
		// machine is overloaded (other tests, other work), the figure is
		// logged but not held against the page.
		best := time.Hour
		var weight int
		for i := 0; i < 5; i++ {
			b.must("load", chromedp.Navigate(w.Origin+"/"))
			var m struct {
				FirstPaint, HTML, DOMReady float64
				Bytes                      int
			}
			if err := b.eval(`new Promise(done => {
				const measure = (fcp) => {
					const nav = performance.getEntriesByType('navigation')[0];
					const own = performance.getEntriesByType('resource').filter(r => r.initiatorType === 'script' || r.initiatorType === 'link');
					done({FirstPaint: fcp, HTML: nav.responseEnd, DOMReady: nav.domContentLoadedEventEnd,
						Bytes: nav.transferSize + own.reduce((n, r) => n + r.transferSize, 0)});
				};
				new PerformanceObserver((list, obs) => {
					const e = list.getEntries().find(p => p.name === 'first-contentful-paint');
					if (e) { obs.disconnect(); measure(e.startTime); }
				}).observe({type: 'paint', buffered: true});
				setTimeout(() => measure(-1), 5000);
			})`, &m); err != nil {
				t.Fatal(err)
			}
			ms := func(f float64) time.Duration {
				return time.Duration(f * float64(time.Millisecond)).Round(100 * time.Microsecond)
			}
			t.Logf("load %d: %d bytes transferred (HTML, CSS, JS); HTML received at %s, DOM ready at %s, first contentful paint at %s",
				i+1, m.Bytes, ms(m.HTML), ms(m.DOMReady), ms(m.FirstPaint))
			if m.FirstPaint >= 0 && ms(m.FirstPaint) < best {
				best = ms(m.FirstPaint)
			}
			weight = m.Bytes
		}
		t.Logf("page weight %d bytes, first contentful paint %s (best of 5)", weight, best)
		if weight == 0 || weight > 50<<10 {
			t.Errorf("the page transfers %d bytes, want under 50 KB", weight)
		}
		if best > 200*time.Millisecond {
			if load, cpus := loadAverage(); load > float64(cpus) {
				t.Logf("first paint %s at best, over 200ms, on a machine with load %.1f on %d cores: not counted", best, load, cpus)
			} else {
				t.Errorf("first paint %s at best, want under 200ms on loopback (load %.1f on %d cores)", best, load, cpus)
			}
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		// A dead letter to show, and a chat open.
		if err := os.WriteFile(poison, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		id := d.Send("dave", "POISON: a message the agent cannot take")
		daemontest.WaitFor(t, func() bool { return message(d, id).State == "dead" }, 30*time.Second, "a dead letter")
		_ = os.Remove(poison)
		b.waitJS(`document.querySelector('#dead tr[data-id=`+jsString(id)+`]')`, 5*time.Second, "the dead letter listed")
		b.clickUntil(`#sessions tbody tr[data-chat="alice"] button`,
			`document.querySelector('#chat-exchanges').textContent.includes('live hello')`, 10*time.Second, "alice's chat")
		b.must("desktop", emulation.SetDeviceMetricsOverride(1280, 860, 1, false))
		b.waitJS(`document.querySelectorAll('#timeline li').length > 0`, 5*time.Second, "the timeline")
		t.Logf("saved %s", b.screenshot(shots, "status-desktop.png"))
		b.must("dark", emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}))
		t.Logf("saved %s", b.screenshot(shots, "status-desktop-dark.png"))
		b.must("light", emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}))
		b.must("phone", emulation.SetDeviceMetricsOverride(390, 844, 2, true))
		var oneColumn bool
		if err := b.eval(`getComputedStyle(document.querySelector('main')).display === 'block' && getComputedStyle(document.querySelector('#sessions thead')).display === 'none'`, &oneColumn); err != nil || !oneColumn {
			t.Errorf("under 600px the page is not one column (%v)", err)
		}
		t.Logf("saved %s", b.screenshot(shots, "status-phone.png"))
		b.must("back to desktop", emulation.ClearDeviceMetricsOverride())
	})

	t.Run("drop asks for a confirmation", func(t *testing.T) {
		var dead struct {
			Messages []api.ListedOut `json:"messages"`
		}
		if st, body, err := d.Do("GET", "/v1/queue?state=dead", nil); err != nil || st != http.StatusOK || json.Unmarshal(body, &dead) != nil || len(dead.Messages) == 0 {
			t.Fatalf("no dead letter to drop: %d %s %v", st, body, err)
		}
		id := dead.Messages[0].ID
		btn := `document.querySelector('#dead tr[data-id=` + jsString(id) + `] button.danger')`
		var ok bool
		if err := b.eval(btn+`.click(), true`, &ok); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if m := message(d, id); m.State != "dead" {
			t.Fatalf("one click dropped the message (state %q)", m.State)
		}
		var label string
		_ = b.eval(btn+`.textContent`, &label)
		if !strings.Contains(label, "?") {
			t.Errorf("after one click the button says %q, want a question", label)
		}
		if err := b.eval(btn+`.click(), true`, &ok); err != nil {
			t.Fatal(err)
		}
		daemontest.WaitFor(t, func() bool {
			st, _, err := d.Do("GET", "/v1/messages/"+id, nil)
			return err == nil && st == http.StatusNotFound
		}, 10*time.Second, "the confirmed drop")
		b.waitJS(`!document.querySelector('#dead tr[data-id=`+jsString(id)+`]')`, 5*time.Second, "the dropped letter to leave the list")
	})

	t.Run("survives a daemon restart", func(t *testing.T) {
		var marker bool
		_ = b.eval(`window.__noReload = true`, &marker)
		oldPid := d.Pid()
		if code, _ := d.Term(); code != 0 {
			t.Fatalf("daemon exit %d", code)
		}
		b.waitJS(`document.querySelector('#daemon').textContent.includes('not reachable')`, 10*time.Second, "the page to show the daemon down")
		b.waitJS(`!document.querySelector('#stream').classList.contains('live')`, 10*time.Second, "the stream to show it is down")
		d.Restart()
		b.waitJS(`document.querySelector('#stream').classList.contains('live')`, 15*time.Second, "the stream to reconnect")
		b.waitJS(`document.querySelector('#daemon').textContent.includes('pid `+strconv.Itoa(d.Pid())+`')`, 10*time.Second, "the new daemon's pid")
		if _, errOut, code := d.Run("send", "bob", "after the restart"); code != 0 {
			t.Fatalf("send: %d %s", code, errOut)
		}
		b.waitJS(`[...document.querySelectorAll('#timeline li[data-type=reply]')].some(li => li.textContent.includes('echo: after the restart'))`,
			10*time.Second, "a reply after the restart in the timeline")
		if err := b.eval(`window.__noReload === true`, &marker); err != nil || !marker {
			t.Error("the page was reloaded")
		}
		var dup int
		_ = b.eval(`(() => { const s = [...document.querySelectorAll('#timeline li')].map(li => li.dataset.seq); return s.length - new Set(s).size; })()`, &dup)
		if dup != 0 {
			t.Errorf("%d events shown twice after the reconnect", dup)
		}
		t.Logf("daemon pid %d → %d; the page followed", oldPid, d.Pid())
	})
}

// message reads a message over the control socket (from any test).
func message(d *daemontest.Daemon, id string) api.MessageOut {
	var m api.MessageOut
	if st, body, err := d.Do("GET", "/v1/messages/"+id, nil); err == nil && st == http.StatusOK {
		_ = json.Unmarshal(body, &m)
	}
	return m
}

// loadAverage is the one-minute load average and the number of CPUs.
func loadAverage() (float64, int) {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	var load float64
	if len(f) > 0 {
		load, _ = strconv.ParseFloat(f[0], 64)
	}
	return load, goruntime.NumCPU()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
