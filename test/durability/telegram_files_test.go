package durability

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/safename"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

// inboxOf lists the files in chat's inbox under the daemon's work folder.
func inboxOf(t *testing.T, d *daemontest.Daemon, chat string) (dir string, names []string) {
	t.Helper()
	dir = filepath.Join(d.StateDir, "work", safename.Of(chat))
	entries, err := os.ReadDir(filepath.Join(dir, "inbox"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return dir, names
}

// TestTelegramAttachmentsKill9: the daemon killed in the middle of an
// attachment's download takes the update in once after its restart, with
// the file complete under the name it would have had, no partial file
// left; the agent's [[file: …]] sends it back as a document; a file
// outside the chat's folder or missing becomes a note; one over
// max_attachment is refused with nothing queued.
func TestTelegramAttachmentsKill9(t *testing.T) {
	fake, d := telegramDaemonWith(t, "    max_attachment: 100KiB\n", 42)
	ann := faketelegram.User{ID: 42, FirstName: "Ann"}
	doc := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	fake.HoldFiles(true)
	u, err := fake.Send(faketelegram.Incoming{From: ann, Text: "the numbers", Document: doc, FileName: "../numbers.txt"})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.WaitFor(t, func() bool { return fake.FilesHeld() == 1 }, 30*time.Second, "the download under way")
	dir, names := inboxOf(t, d, "tg:42")
	if len(names) != 1 || !strings.HasSuffix(names[0], ".part") {
		t.Fatalf("inbox during the download: %q", names)
	}
	d.Kill9()
	fake.HoldFiles(false)
	d.Restart()
	name := fmt.Sprintf("telegram-%d-numbers.txt", u.UpdateID)
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool { return len(s) >= 1 }, "the echo of the attachment")
	if s := fake.Sent(42); len(s) != 1 || s[0].Text != "the numbers\n[attached: inbox/"+name+"]" {
		t.Fatalf("sent %+v", s)
	}
	if _, names = inboxOf(t, d, "tg:42"); len(names) != 1 || names[0] != name {
		t.Fatalf("inbox after the restart: %q", names)
	}
	got, err := os.ReadFile(filepath.Join(dir, "inbox", name))
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("saved %d bytes of %d: %v", len(got), len(doc), err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "inbox", name)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}

	// Files out: the echo agent repeats the markers.
	if _, err := fake.SendText(ann, "back: [[file: inbox/"+name+"]] [[file: ../../dispatch.db]] [[file: nope.txt]]"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool { return len(s) >= 5 }, "the text, the file and two notes")
	s := fake.Sent(42)[1:]
	if s[0].Text != "back:" || s[1].Document == nil || s[1].Document.FileName != name ||
		s[2].Text != "could not send file ../../dispatch.db: it is outside the working directory" ||
		s[3].Text != "could not send file nope.txt: no such file" {
		t.Fatalf("sent %+v", s)
	}
	if data, _ := fake.FileData(s[1].Document.FileID); !bytes.Equal(data, doc) {
		t.Fatalf("document sent: %d bytes", len(data))
	}

	// Too big: refused, nothing queued.
	if _, err := fake.Send(faketelegram.Incoming{From: ann, Document: make([]byte, 101<<10), FileName: "big.bin"}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool { return len(s) >= 6 }, "the refusal")
	if r := fake.Sent(42)[5].Text; !strings.Contains(r, "too big") || !strings.Contains(r, "100 KiB") {
		t.Fatalf("refusal %q", r)
	}
	if _, names = inboxOf(t, d, "tg:42"); len(names) != 1 {
		t.Fatalf("inbox after the refusal: %q", names)
	}
	d.Term()
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.List(context.Background(), store.Filter{ChatID: "tg:42", State: store.Done})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("%d messages stored, want the attachment's and the text's: %+v", len(ms), ms)
	}
}

// TestTelegramAttachmentsKill9Stream kills the daemon while a stream of
// documents is being taken in: in the end each update was accepted once,
// names one complete file, and no partial file is left.
func TestTelegramAttachmentsKill9Stream(t *testing.T) {
	fake, d := telegramDaemon(t, 42)
	ann := faketelegram.User{ID: 42, FirstName: "Ann"}
	const n = 16
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 32<<10+i) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if _, err := fake.Send(faketelegram.Incoming{From: ann, Text: fmt.Sprint("doc ", i), Document: content(i), FileName: fmt.Sprintf("d%d.bin", i)}); err != nil {
				t.Error(err)
			}
			time.Sleep(15 * time.Millisecond)
		}
	}()
	daemontest.WaitFor(t, func() bool { return len(fake.Sent(42)) >= 2 }, 30*time.Second, "replies under way")
	d.Kill9()
	d.Restart()
	<-done
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool {
		return len(s) > 0 && strings.HasPrefix(s[len(s)-1].Text, fmt.Sprint("doc ", n-1, "\n"))
	}, "every attachment echoed")
	dir, names := inboxOf(t, d, "tg:42")
	if len(names) != n {
		t.Fatalf("inbox holds %d entries for %d documents: %q", len(names), n, names)
	}
	d.Term()
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.List(context.Background(), store.Filter{ChatID: "tg:42", State: store.Done})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("%d messages stored for %d updates", len(ms), n)
	}
	for _, m := range ms {
		var i int
		var rel string
		if _, err := fmt.Sscanf(strings.ReplaceAll(m.Text, "\n", " "), "doc %d [attached: %s", &i, &rel); err != nil {
			t.Fatalf("message %q: %v", m.Text, err)
		}
		rel = strings.TrimSuffix(rel, "]")
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || !bytes.Equal(got, content(i)) {
			t.Fatalf("%s: %d bytes, want %d: %v", rel, len(got), len(content(i)), err)
		}
	}
}

// TestTelegramAttachmentKill9BeforeCommit kills the daemon after an
// attachment's download and before its accept commits (held by a write
// lock the test takes on the database): after the restart the update is
// accepted once, naming the file already saved under the same name.
func TestTelegramAttachmentKill9BeforeCommit(t *testing.T) {
	fake, d := telegramDaemon(t, 42)
	ann := faketelegram.User{ID: 42, FirstName: "Ann"}
	if _, err := fake.SendText(ann, "first"); err != nil {
		t.Fatal(err)
	}
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool { return len(s) == 1 }, "the first echo")
	waitDone(t, d, "tg:42", 1) // else the kill may come before it is recorded, and it is sent again
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
	doc := bytes.Repeat([]byte("z"), 10000)
	u, err := fake.Send(faketelegram.Incoming{From: ann, Text: "held", Document: doc, FileName: "z.txt"})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("telegram-%d-z.txt", u.UpdateID)
	daemontest.WaitFor(t, func() bool {
		_, names := inboxOf(t, d, "tg:42")
		return len(names) == 1 && names[0] == name
	}, 30*time.Second, "the download saved")
	time.Sleep(200 * time.Millisecond) // the accept waiting on the lock
	if n := len(fake.Sent(42)); n != 1 {
		t.Fatalf("%d messages sent before the kill: the accept was not held", n)
	}
	d.Kill9()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	db.Close()
	d.Restart()
	waitSent(t, fake, 42, func(s []faketelegram.SentMessage) bool { return len(s) >= 2 }, "the attachment's echo")
	time.Sleep(500 * time.Millisecond)
	if s := fake.Sent(42); len(s) != 2 || s[1].Text != "held\n[attached: inbox/"+name+"]" {
		t.Fatalf("sent %+v", s)
	}
	dir, names := inboxOf(t, d, "tg:42")
	if len(names) != 1 || names[0] != name {
		t.Fatalf("inbox %q", names)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "inbox", name)); !bytes.Equal(got, doc) {
		t.Fatalf("saved %d bytes", len(got))
	}
	d.Term()
	st, err := sqlite.Open(filepath.Join(d.StateDir, "dispatch.db"), clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms, err := st.List(ctx, store.Filter{ChatID: "tg:42", State: store.Done})
	if err != nil || len(ms) != 2 {
		t.Fatalf("%d messages stored for 2 updates: %v", len(ms), err)
	}
}
