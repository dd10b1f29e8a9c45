// Package web tests the status page of `dispatch web` end to end: the real
// daemon (with the stub Claude CLI), the real `dispatch web` process, and
// headless Chromium driven over the DevTools protocol (chromedp).
//
// Chromium is Debian's `chromium` package (scripts/install-tools.sh installs
// it when it can); DISPATCH_CHROMIUM overrides its path. Without it the
// tests skip, unless CI=true or DISPATCH_REQUIRE_CHROMIUM=1, which turn the
// skip into a failure. Screenshots go to $DISPATCH_WEB_ARTIFACTS (default:
// the test's temporary directory).
package web

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// chromium returns the browser to test with, or skips (fails on CI).
func chromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DISPATCH_CHROMIUM")
	if bin == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		msg := "chromium not installed: run scripts/install-tools.sh as root, or apt-get install chromium (or set DISPATCH_CHROMIUM)"
		if os.Getenv("CI") == "true" || os.Getenv("DISPATCH_REQUIRE_CHROMIUM") == "1" {
			t.Fatal(msg + "; CI must run the browser tests")
		}
		t.Skip(msg)
	}
	return bin
}

// artifacts is where screenshots are written.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("DISPATCH_WEB_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// webServer is one `dispatch web` process.
type webServer struct {
	URL    string // the printed URL, with the one-time secret
	Origin string // http://ADDR
	cmd    *exec.Cmd
}

// startWeb runs `dispatch web` for d and reads the URL it prints.
func startWeb(t *testing.T, d *daemontest.Daemon, args ...string) *webServer {
	t.Helper()
	cmd := d.Cmd(append([]string{"web"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := stderrFile(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("dispatch web did not stop on SIGTERM within 10s")
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "http://") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case u, ok := <-lines:
		if !ok {
			t.Fatalf("dispatch web printed no URL; stderr:\n%s", stderr.String())
		}
		origin, _, _ := strings.Cut(u, "/?secret=")
		if origin == u || !strings.HasPrefix(origin, "http://127.0.0.1:") {
			t.Fatalf("printed URL %q, want http://127.0.0.1:PORT/?secret=…", u)
		}
		return &webServer{URL: u, Origin: origin, cmd: cmd}
	case <-time.After(20 * time.Second):
		t.Fatalf("dispatch web printed no URL within 20s; stderr:\n%s", stderr.String())
	}
	return nil
}

// stderrFile sends cmd's standard error to a file (written by the process
// itself, so reading it races with nothing); String reads it.
func stderrFile(t *testing.T, cmd *exec.Cmd) fileText {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd.Stderr = f
	return fileText(p)
}

// fileText is a file whose content String returns.
type fileText string

func (f fileText) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// browser is one headless Chromium with one tab.
type browser struct {
	t       *testing.T
	ctx     context.Context
	dialogs chan string // JavaScript dialogs that opened (alert, …)
}

// newBrowser starts headless Chromium with the flags that work on a closed
// network, and a fresh profile.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := chromium(t)
	// The profile is not t.TempDir(): Chromium's helper processes may
	// still write into it for a moment after the browser has gone, and
	// the testing package fails a test whose temporary folder cannot be
	// removed. A profile left behind is only disk space, so its removal is
	// retried briefly and otherwise logged.
	profile, err := os.MkdirTemp("", "dispatch-web-profile-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// The protocol library may not know every value a newer Chromium sends
	// (it logs "could not unmarshal event"); those events are not ours.
	quiet := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "could not unmarshal event") {
			t.Logf("chromedp: %s", msg)
		}
	}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(quiet), chromedp.WithLogf(quiet))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		var err error
		for range 20 {
			if err = os.RemoveAll(profile); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind: %v", profile, err)
	})
	b := &browser{t: t, ctx: ctx, dialogs: make(chan string, 16)}
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case b.dialogs <- e.Message:
			default:
			}
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(true))
		}
	})
	// The first Run starts the browser and must not have a deadline of its
	// own: when that context ends, so does the browser.
	if err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	return b
}

// run runs actions with a deadline.
func (b *browser) run(timeout time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, actions...)
}

// must runs actions and fails the test on an error.
func (b *browser) must(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := b.run(30*time.Second, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// clickUntil clicks the element sel in one script run (finding it and
// clicking it together, so a redraw of the list between the two cannot
// swallow the click) and clicks again while cond (a JavaScript expression)
// does not hold within 2 s, until timeout. For clicks that are harmless
// to repeat (opening a chat), not toggles.
func (b *browser) clickUntil(sel, cond string, timeout time.Duration, what string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	click := `(() => { const e = document.querySelector(` + jsString(sel) + `); if (e) e.click(); return !!e })()`
	for {
		var found bool
		_ = b.eval(click, &found)
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			var ok bool
			if err := b.eval("!!("+cond+")", &ok); err == nil && ok {
				return
			}
		}
		if time.Now().After(deadline) {
			var body string
			_ = b.eval("document.body ? document.body.innerText.slice(0, 3000) : ''", &body)
			b.t.Fatalf("timed out after %s clicking %s for %s (found: %v); the page says:\n%s", timeout, sel, what, found, body)
		}
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into out.
func (b *browser) eval(expr string, out any) error {
	return b.run(10*time.Second, chromedp.Evaluate(expr, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	}))
}

// waitJS polls a boolean expression every 10 ms until it is true and
// returns how long that took; at the timeout it fails with what.
func (b *browser) waitJS(expr string, timeout time.Duration, what string) time.Duration {
	b.t.Helper()
	start := time.Now()
	for {
		var ok bool
		err := b.eval("!!("+expr+")", &ok)
		if err == nil && ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			var body string
			_ = b.eval("document.body ? document.body.innerText.slice(0, 3000) : ''", &body)
			b.t.Fatalf("timed out after %s waiting for %s (last error %v); the page says:\n%s", timeout, what, err, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// screenshot saves a full-page PNG under dir.
func (b *browser) screenshot(dir, name string) string {
	b.t.Helper()
	var buf []byte
	b.must("screenshot "+name, chromedp.FullScreenshot(&buf, 100))
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == '<' || r == '>' || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
