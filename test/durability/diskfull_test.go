package durability

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// mountTmpfs mounts a small tmpfs at dir (created), or skips the test where
// mounting is not allowed; under CI, which runs as root, it must work.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := "cannot mount a tmpfs (needs root): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// fill writes to path until the file system is full and returns the file
// (removing it frees the space again).
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// The last few pages: small writes until not even one fits.
	for {
		if _, err := f.Write(chunk[:512]); err != nil {
			return
		}
	}
}

// TestFullDisk puts the state directory (database, logs, socket) on a
// small tmpfs and fills it while a turn is in flight. The turn's outcome
// cannot be written: the session says store_error, its messages stay in
// flight, the message behind them waits, and a new send is refused at once
// with 507 (the CLI exits 1) instead of hanging. When space returns, the
// work continues in order and nothing is lost.
func TestFullDisk(t *testing.T) {
	d := daemontest.New(t, opts(quietChecks))
	mountTmpfs(t, d.StateDir, "16m")
	t.Cleanup(func() {
		if d.Running() {
			d.Term()
		}
		_ = exec.Command("umount", "-l", d.StateDir).Run()
	})
	d.Restart()
	dumpOnFailure(t, d, "disk")

	d.WaitMessage(d.Send("disk", msgText("disk", 0, "")), "done", 15*time.Second)
	first := d.Send("disk", msgText("disk", 1, "SLEEP=2s"))
	d.WaitMessage(first, "inflight", 10*time.Second)
	second := d.Send("disk", msgText("disk", 2, ""))

	filler := filepath.Join(d.StateDir, "filler")
	fill(t, filler)
	t.Logf("state dir full")

	d.WaitFor(func() bool {
		s, ok := d.Session("disk")
		return ok && s.HealthReason == "store_error" && s.StoreError != ""
	}, 20*time.Second, "the session to report store_error")

	// Accepts fail clearly and at once.
	start := time.Now()
	st, data, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: "disk", Text: "refused"})
	if err != nil || (st != http.StatusInsufficientStorage && st != http.StatusServiceUnavailable) || !strings.Contains(string(data), "disk") {
		t.Errorf("POST on a full disk: HTTP %d %s %v; want 507 naming the disk", st, data, err)
	}
	if _, errOut, code := d.Run("send", "disk", "refused too"); code != 1 {
		t.Errorf("dispatch send on a full disk: exit %d, %q; want 1", code, errOut)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("refusing two sends took %s", took)
	}
	// the daemon says it is not healthy, and why
	if ds := d.Status().Daemon; ds.Healthy || !strings.Contains(ds.StoreFull, "space") {
		t.Errorf("daemon status on a full disk: healthy %t, store_full %q; want unhealthy naming the disk", ds.Healthy, ds.StoreFull)
	}
	if m := d.Message(first); m.State != "inflight" {
		t.Errorf("the turn's message while its outcome cannot be written: %s, want inflight", m.State)
	}
	if m := d.Message(second); m.State != "pending" {
		t.Errorf("the message behind it: %s, want pending (it must not overtake)", m.State)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	t.Logf("space freed")
	d.WaitMessage(first, "done", 30*time.Second)
	d.WaitMessage(second, "done", 30*time.Second)
	d.WaitFor(func() bool {
		s, ok := d.Session("disk")
		return ok && s.Healthy && s.StoreError == ""
	}, 10*time.Second, "store_error to clear")
	d.WaitMessage(d.Send("disk", msgText("disk", 3, "")), "done", 15*time.Second)
	if ds := d.Status().Daemon; !ds.Healthy || ds.StoreFull != "" {
		t.Errorf("daemon status once space returned: healthy %t, store_full %q", ds.Healthy, ds.StoreFull)
	}

	if got := firstDelivery(deliveries(d)["disk"]); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Errorf("deliveries %v, want [0 1 2 3] in order", got)
	}
	if !d.Running() {
		t.Fatal("the daemon died on a full disk")
	}
	if code, _ := d.Term(); code != 0 {
		t.Errorf("shutdown after a full disk: exit %d", code)
	}
}
