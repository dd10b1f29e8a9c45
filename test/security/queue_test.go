package security

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

var quiet = map[string]any{
	"agent.kind":               "echo",
	"health.first_check_delay": "1h",
	"health.check_interval":    "1h",
	"health.idle_timeout":      "1h",
}

// seedDone stores n answered messages of size bytes each (text and reply)
// straight into a new state dir, before the daemon starts, and returns the
// first one's id.
func seedDone(t *testing.T, stateDir string, n, size int) (first string) {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(stateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	big := strings.Repeat("x", size)
	for i := range n {
		id, _, err := st.Accept(ctx, "big", big, fmt.Sprintf("m%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = id
		}
	}
	for {
		msgs, _, err := st.Claim(ctx, "big", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if err := st.Complete(ctx, ids, big); err != nil {
			t.Fatal(err)
		}
	}
	return first
}

// rss returns a process's resident and peak resident memory in bytes.
func rss(t *testing.T, pid int) (now, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return now, peak
}

// Six clients that ask for the biggest page of 1 MiB messages and never
// read the answer must not balloon the daemon: pages are bounded, texts
// clipped, and the answer streamed. The daemon's peak resident memory
// stays under 100 MB.
func TestQueueSlowReadersBoundMemory(t *testing.T) {
	const (
		messages = 48
		size     = 1 << 20
		readers  = 6
		limitMB  = 100
	)
	d := daemontest.New(t, daemontest.Set(quiet))
	first := seedDone(t, d.StateDir, messages, size)
	d.Restart()
	_, before := rss(t, d.Pid())
	sock := filepath.Join(d.StateDir, "dispatch.sock")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range readers {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /v1/queue?state=done&limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	var peak int64
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, p := rss(t, d.Pid())
		peak = max(peak, p)
	}
	t.Logf("%d slow readers over %d messages of %d KiB: daemon peak RSS %.1f MB (%.1f MB before)",
		readers, messages, size>>10, float64(peak)/1e6, float64(before)/1e6)
	if peak > limitMB*1e6 {
		t.Errorf("daemon peak RSS %.1f MB with %d slow readers; want under %d MB", float64(peak)/1e6, readers, limitMB)
	}
	// The readers get a bounded, clipped page when they do read.
	br := bufio.NewReader(conns[0])
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	out, _, code := d.Run("queue", "show", first)
	if code != 0 || !strings.Contains(out, "reply:") || len(out) < size {
		t.Errorf("queue show of a seeded message: exit %d, %d bytes", code, len(out))
	}
}
