package campaign

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// Campaign 6: the state directory on a small tmpfs, filled while chats
// are busy. Accepts answer 507, the daemon says it is unhealthy; when the
// space is freed, accepts work again, the daemon is healthy and nothing
// accepted is lost. Needs root (mount).
func TestCampaignFullDisk(t *testing.T) {
	d := daemontest.New(t, daemontest.Set(quiet))
	if err := os.MkdirAll(d.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", d.StateDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %s", out)
	}
	t.Cleanup(func() {
		if d.Running() {
			d.Term()
		}
		_ = exec.Command("umount", "-l", d.StateDir).Run()
	})
	d.Restart()
	sent := map[string][]string{}
	for i := range 5 {
		sent["disk"] = append(sent["disk"], d.Send("disk", "before #"+string(rune('0'+i))+" SLEEP=300ms"))
	}
	filler := filepath.Join(d.StateDir, "filler")
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	f.Close()

	var codes []int
	unhealthy := false
	for range 10 {
		st, _, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: "disk", Text: "while full"})
		if err != nil {
			t.Fatalf("POST while full: %v", err)
		}
		codes = append(codes, st)
		if ds := d.Status().Daemon; !ds.Healthy {
			unhealthy = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	n507 := 0
	for _, c := range codes {
		if c == http.StatusInsufficientStorage {
			n507++
		}
	}
	ds := d.Status().Daemon
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var recovered time.Duration
	start := time.Now()
	daemontest.WaitFor(t, func() bool {
		st, _, err := d.Do("POST", "/v1/messages", api.MessageIn{ChatID: "disk", Text: "after", ClientID: "after-1"})
		return err == nil && st == http.StatusAccepted
	}, 60*time.Second, "accepts after the space is freed")
	recovered = time.Since(start)
	d.WaitFor(func() bool { return d.Status().Daemon.Healthy }, 30*time.Second, "healthy again")
	waitIdle(t, d, 60*time.Second)
	lost := 0
	for _, id := range sent["disk"] {
		if m := d.Message(id); m.State != "done" {
			lost++
			t.Errorf("%s: %s", id, m.State)
		}
	}
	t.Logf("RESULT full disk (tmpfs 16m): accepts while full %v (507: %d of %d); unhealthy while full %t (store_full %q); accepts again %s after freeing; healthy again; of %d accepted before, %d not done; dead %d",
		codes, n507, len(codes), unhealthy, ds.StoreFull, recovered.Round(time.Millisecond), len(sent["disk"]), lost, d.Status().Queue.Dead)
	if n507 == 0 || !unhealthy || !strings.Contains(ds.StoreFull, "space") {
		t.Errorf("while full: codes %v, unhealthy %t, store_full %q", codes, unhealthy, ds.StoreFull)
	}
}
