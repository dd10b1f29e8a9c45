package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// The status page's credential is usable only by the page's own origin:
// after the page is open, another server on another loopback port that
// the same browser visits receives nothing (cookies do not separate
// ports, and SameSite treats two ports of 127.0.0.1 as one site), and
// the browser itself holds nothing that opens /api to anyone but the page.
func TestCredentialStaysWithThePagesOrigin(t *testing.T) {
	b := newBrowser(t)
	d := daemontest.Start(t, daemontest.Options{})
	d.WaitMessage(d.Send("alice", "the secret plans"), "done", 15*time.Second)
	w := startWeb(t, d)
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	b.waitJS(`document.querySelector('#sessions tbody tr[data-chat=alice]')`, 10*time.Second, "the page to show alice")
	b.waitJS(`document.querySelector('#stream').classList.contains('live')`, 10*time.Second, "the live stream")

	// A local user's server on another loopback port.
	var (
		mu   sync.Mutex
		seen []http.Header
	)
	other := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		rw.Header().Set("Content-Type", "text/html")
		io.WriteString(rw, "<!doctype html><title>other</title><p>another local server</p>")
	}))
	defer other.Close()
	if !strings.HasPrefix(other.URL, "http://127.0.0.1:") || strings.HasPrefix(w.Origin, other.URL) {
		t.Fatalf("other server at %s, page at %s: want two ports of 127.0.0.1", other.URL, w.Origin)
	}
	b.must("visit the other server", chromedp.Navigate(other.URL+"/collect"))
	// Its page asks for the status page's API, as a script of that
	// origin can (the answer is opaque to it, but a cookie would ride along).
	var status int
	if err := b.eval(`fetch(`+jsString(w.Origin+"/api/chat?chat=alice")+`, {mode: 'no-cors', credentials: 'include'}).then(() => 0, () => -1)`, &status); err != nil {
		t.Fatal(err)
	}
	var theirs struct{ Session, Local int }
	if err := b.eval(`({Session: sessionStorage.length, Local: localStorage.length})`, &theirs); err != nil {
		t.Fatal(err)
	}
	if theirs.Session != 0 || theirs.Local != 0 {
		t.Errorf("the other origin sees %d sessionStorage and %d localStorage items", theirs.Session, theirs.Local)
	}

	mu.Lock()
	got := append([]http.Header(nil), seen...)
	mu.Unlock()
	if len(got) == 0 {
		t.Fatal("the other server saw no request")
	}
	for _, h := range got {
		if c := h.Get("Cookie"); c != "" {
			t.Errorf("the other server received a cookie: %q", c)
		}
		if a := h.Get("Authorization"); a != "" {
			t.Errorf("the other server received credentials: %q", a)
		}
	}
	// The browser keeps no cookie at all, for any port.
	var cookies []*network.Cookie
	b.must("read the browser's cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = storage.GetCookies().Do(ctx)
		return err
	}))
	for _, c := range cookies {
		t.Errorf("the browser holds a cookie %s=%s for %s", c.Name, c.Value, c.Domain)
	}
	// What the browser sends on its own (a top-level visit, as a link on
	// the other page would make) opens nothing either.
	b.must("visit /api/chat directly", chromedp.Navigate(w.Origin+"/api/chat?chat=alice"))
	var body string
	_ = b.eval(`document.body.innerText`, &body)
	if strings.Contains(body, "secret plans") || !strings.Contains(body, "refused") {
		t.Errorf("a top-level visit of /api/chat shows %q", body)
	}

	// Back on the page's own origin, in the same tab, the session goes on
	// (sessionStorage survives a reload), without the secret.
	b.must("reload the page", chromedp.Navigate(w.Origin+"/"))
	b.waitJS(`document.querySelector('#sessions tbody tr[data-chat=alice]')`, 10*time.Second, "the reloaded page to show alice")
	b.waitJS(`document.querySelector('#stream').classList.contains('live')`, 10*time.Second, "the live stream after the reload")
}
