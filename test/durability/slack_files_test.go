package durability

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/fakeslack"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// TestSlackFilesKill9BeforeCommit: the daemon killed after a file's
// download and before its message commits (held by a write lock the test
// takes on the database) takes the message in once after its restart (Slack
// sends the unacknowledged envelope again), naming the file already saved
// under the same name; the agent's [[file: …]] uploads it back into the
// conversation, and a file outside the chat's folder becomes a note; one
// over max_attachment is refused with nothing queued.
func TestSlackFilesKill9BeforeCommit(t *testing.T) {
	fake, d := slackDaemonWith(t, "    max_attachment: 100KiB\n", "U0ANN")
	p, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Text: "first"})
	if err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool { return len(s) == 1 }, "the first echo")
	chat := "slack:" + fake.TeamID() + ":" + p.Channel
	waitDone(t, d, chat, 1)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.StateDir, "dispatch.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	doc := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	f, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Text: "the numbers", Files: []fakeslack.FileIn{{Name: "../numbers.txt", Data: doc}}})
	if err != nil {
		t.Fatal(err)
	}
	name := "slack-" + f.TS + "-" + f.Files[0] + "-numbers.txt"
	daemontest.WaitFor(t, func() bool {
		_, names := inboxOf(t, d, chat)
		return len(names) == 1 && names[0] == name
	}, 30*time.Second, "the download saved")
	time.Sleep(200 * time.Millisecond) // the accept waiting on the lock
	if n := len(fake.BotMessages(p.Channel)); n != 1 {
		t.Fatalf("%d bot messages before the kill: the accept was not held", n)
	}
	d.Kill9()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	db.Close()
	d.Restart()
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool { return len(s) >= 2 }, "the file's echo")
	time.Sleep(500 * time.Millisecond)
	if s := fake.BotMessages(p.Channel); len(s) != 2 || s[1].Text != "the numbers\n[attached: inbox/"+name+"]" {
		t.Fatalf("bot messages %+v", s)
	}
	dir, names := inboxOf(t, d, chat)
	if len(names) != 1 || names[0] != name {
		t.Fatalf("inbox %q", names)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "inbox", name)); !bytes.Equal(got, doc) {
		t.Fatalf("saved %d bytes", len(got))
	}

	// Files out: the echo agent repeats the markers.
	waitDone(t, d, chat, 2)
	if _, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Text: "back: [[file: inbox/" + name + "]] [[file: ../../dispatch.db]]"}); err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool { return len(s) >= 5 }, "the text, the file and a note")
	s := fake.BotMessages(p.Channel)[2:]
	if s[0].Text != "back:" || len(s[1].Files) != 1 || s[2].Text != "could not send file ../../dispatch.db: it is outside the working directory" {
		t.Fatalf("bot messages %+v", s)
	}
	if data, _ := fake.FileData(s[1].Files[0]); !bytes.Equal(data, doc) {
		t.Fatalf("file uploaded: %d bytes", len(data))
	}

	// Too big: refused, nothing queued.
	if _, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Files: []fakeslack.FileIn{{Name: "big.bin", Data: make([]byte, 101<<10)}}}); err != nil {
		t.Fatal(err)
	}
	waitBot(t, fake, p.Channel, func(s []fakeslack.Message) bool { return len(s) >= 6 }, "the refusal")
	if r := fake.BotMessages(p.Channel)[5].Text; !strings.Contains(r, "too big") || !strings.Contains(r, "100 KiB") {
		t.Fatalf("refusal %q", r)
	}
	if _, names = inboxOf(t, d, chat); len(names) != 1 {
		t.Fatalf("inbox after the refusal: %q", names)
	}
	d.Term()
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.List(ctx, store.Filter{ChatID: chat, State: store.Done})
	if err != nil || len(ms) != 3 {
		t.Fatalf("%d messages stored, want 3: %v", len(ms), err)
	}
}

// waitDone waits until chat's first n replies are delivered (recorded as
// sent in the store): a kill before that sends them again.
func waitDone(t *testing.T, d *daemontest.Daemon, chat string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.StateDir, "dispatch.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	daemontest.WaitFor(t, func() bool {
		var done int
		err := db.QueryRow("SELECT count(*) FROM channel_deliveries WHERE chat_id = ? AND state = 'done'", chat).Scan(&done)
		return err == nil && done >= n
	}, 30*time.Second, "the replies recorded as delivered")
}
