package telegram_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/faketelegram"
	"github.com/dispatchd/dispatch/internal/safename"
	"github.com/dispatchd/dispatch/internal/store"
)

func TestFileParts(t *testing.T) {
	// A reply of files only has no text part; the files follow the text.
	d := store.ChannelDelivery{Kind: "reply", Text: "[[file: a]]\n[[file: b]]"}
	if parts, err := telegram.Parts(d); err != nil || len(parts) != 0 || len(telegram.Files(d)) != 2 {
		t.Fatalf("parts %q %v files %q", parts, err, telegram.Files(d))
	}
	if fs := telegram.Files(store.ChannelDelivery{Kind: "dead_letter", Text: "[[file: a]]"}); fs != nil {
		t.Fatalf("a dead letter sends files: %q", fs)
	}
}

// folders keeps every chat's working directory below one base, as the
// daemon does.
type folders struct{ base string }

func (f folders) ChatDir(chat string) (string, error) {
	return filepath.Join(f.base, safename.Of(chat)), nil
}

// filesRig is a rig whose channel has working directories and limit as
// attachment limit.
func filesRig(t *testing.T, reply func(string) string, limit int64) (*rig, string) {
	base := filepath.Join(t.TempDir(), "work")
	r := newRig(t, reply, func(c *telegram.Config) {
		c.Folders, c.MaxAttachment = folders{base}, limit
	})
	return r, filepath.Join(base, safename.Of("tg:42"))
}

func TestAttachmentsIn(t *testing.T) {
	r, dir := filesRig(t, echo, 1<<20)
	photo := bytes.Repeat([]byte{0xff, 0xd8, 0xff, 0xe0}, 5000)
	up := r.send(faketelegram.Incoming{From: ann, Text: "look", Photo: photo})
	ud := r.send(faketelegram.Incoming{From: ann, Document: []byte("a,b\n1,2\n"), FileName: "../../../etc/cron.d/evil.csv"})
	r.waitSent(42, 2)
	ms := r.messages("tg:42")
	if len(ms) != 2 {
		t.Fatalf("%d messages: %+v", len(ms), ms)
	}
	wantPhoto := fmt.Sprintf("inbox/telegram-%d-photo.jpg", up.UpdateID)
	wantDoc := fmt.Sprintf("inbox/telegram-%d-etc_cron.d_evil.csv", ud.UpdateID)
	if ms[0].Text != "look\n[attached: "+wantPhoto+"]" || ms[1].Text != "[attached: "+wantDoc+"]" {
		t.Fatalf("texts %q, %q", ms[0].Text, ms[1].Text)
	}
	for path, want := range map[string][]byte{wantPhoto: photo, wantDoc: []byte("a,b\n1,2\n")} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes, want %d (the largest photo size): %v", path, len(got), len(want), err)
		}
		fi, _ := os.Stat(filepath.Join(dir, path))
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", path, fi.Mode())
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "inbox")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, fi.Mode(), err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "inbox"))
	if len(entries) != 2 {
		t.Fatalf("inbox holds %d entries (a temporary file left?)", len(entries))
	}
}

func TestAttachmentTooBigRefused(t *testing.T) {
	r, dir := filesRig(t, echo, 1000)
	r.send(faketelegram.Incoming{From: ann, Text: "big", Document: make([]byte, 1001), FileName: "big.bin"})
	sent := r.waitSent(42, 1)
	if !strings.Contains(sent[0].Text, "too big") || !strings.Contains(sent[0].Text, "1001 bytes") || !strings.Contains(sent[0].Text, "1000 bytes") {
		t.Fatalf("refusal %q", sent[0].Text)
	}
	// One the update does not give the size of is refused once it is
	// downloading past the limit.
	r.send(faketelegram.Incoming{From: ann, Text: "fine", Document: make([]byte, 1000), FileName: "ok.bin"})
	r.waitSent(42, 2)
	ms := r.messages("tg:42")
	if len(ms) != 1 || !strings.HasPrefix(ms[0].Text, "fine\n") {
		t.Fatalf("queued %+v", ms)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "inbox"))
	if len(entries) != 1 {
		t.Fatalf("inbox holds %d entries", len(entries))
	}
}

// An inbox that is a symbolic link is not followed: the person is told,
// nothing is queued, nothing is written where it points.
func TestAttachmentInboxSymlinkRefused(t *testing.T) {
	r, dir := filesRig(t, echo, 1<<20)
	elsewhere := t.TempDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "inbox")); err != nil {
		t.Fatal(err)
	}
	r.send(faketelegram.Incoming{From: ann, Document: []byte("x"), FileName: "x.txt"})
	sent := r.waitSent(42, 1)
	if !strings.Contains(sent[0].Text, "could not save") || !strings.Contains(sent[0].Text, "symbolic link") {
		t.Fatalf("answer %q", sent[0].Text)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Fatalf("wrote through the link: %v", entries)
	}
	if ms := r.messages("tg:42"); len(ms) != 0 {
		t.Fatalf("queued %+v", ms)
	}
}

// The download happens before the accept commits: an accept that fails
// after the download, and a channel stopped and started again there (as
// a crash and restart would), finds the file already saved under the
// same name, and one message names it.
func TestAttachmentDownloadThenCommitFailsOnce(t *testing.T) {
	r, dir := filesRig(t, echo, 1<<20)
	for {
		if c, _ := r.st.ChannelCursor(context.Background(), "telegram"); !c.Updated.IsZero() {
			break // the outbox started, so the intake polls
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.st.InjectWriteFault(func() error { return fmt.Errorf("disk: %w", syscall.ENOSPC) })
	u := r.send(faketelegram.Incoming{From: ann, Text: "doc", Document: []byte("v1"), FileName: "n.txt"})
	name := filepath.Join(dir, "inbox", fmt.Sprintf("telegram-%d-n.txt", u.UpdateID))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(name); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not downloaded before the commit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(600 * time.Millisecond) // more failed commits
	if ms := r.messages("tg:42"); len(ms) != 0 {
		t.Fatalf("accepted under a fault: %+v", ms)
	}
	// The daemon stops there (as a crash would leave it) and starts
	// again: the update comes again, the file is found under its name.
	r.ch.Stop()
	r.st.InjectWriteFault(nil)
	r.start()
	r.waitSent(42, 1)
	time.Sleep(300 * time.Millisecond)
	if n := len(r.fake.Sent(42)); n != 1 {
		t.Fatalf("%d replies", n)
	}
	ms := r.messages("tg:42")
	if len(ms) != 1 || ms[0].Text != fmt.Sprintf("doc\n[attached: inbox/telegram-%d-n.txt]", u.UpdateID) {
		t.Fatalf("messages %+v", ms)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "inbox")); len(entries) != 1 {
		t.Fatalf("inbox holds %v", entries)
	}
}

// Without working directories, attachments are answered as not readable.
func TestAttachmentWithoutFolders(t *testing.T) {
	r := newRig(t, echo)
	r.send(faketelegram.Incoming{From: ann, Photo: []byte("x")})
	if sent := r.waitSent(42, 1); sent[0].Text != telegram.UnsupportedText {
		t.Fatalf("answer %q", sent[0].Text)
	}
}

func TestFilesOut(t *testing.T) {
	var r *rig
	var dir string
	r, dir = filesRig(t, func(text string) string { return text }, 1<<20)
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The chat's folder exists once something was saved in it.
	r.send(faketelegram.Incoming{From: ann, Document: []byte("report body"), FileName: "r.txt"})
	r.waitSent(42, 1)
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "out", "report.csv"), []byte("a,b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.send(faketelegram.Incoming{From: ann, Text: "Here you are:\n[[file: out/report.csv]]\n[[file: ../../secret.txt]]\n[[file: " + outside +
		"]]\n[[file: link.txt]]\n[[file: missing.txt]]\n[[file: out]]\n[[file: pipe]]"})
	sent := r.waitSent(42, 9)
	time.Sleep(200 * time.Millisecond)
	sent = r.fake.Sent(42)
	if len(sent) != 9 {
		t.Fatalf("%d messages", len(sent))
	}
	got := []string{}
	for _, m := range sent[1:] {
		if m.Document != nil {
			data, _ := r.fake.FileData(m.Document.FileID)
			got = append(got, "doc "+m.Document.FileName+" "+string(data))
		} else {
			got = append(got, m.Text)
		}
	}
	want := []string{
		"Here you are:",
		"doc report.csv a,b\n",
		"could not send file ../../secret.txt: it is outside the working directory",
		"could not send file " + outside + ": it is outside the working directory",
		"could not send file link.txt: it is outside the working directory",
		"could not send file missing.txt: no such file",
		"could not send file out: it is not a regular file",
		"could not send file pipe: it is not a regular file",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("sent\n%q\nwant\n%q", got, want)
	}
	ds := r.waitDelivered("tg:42", 2)
	if ds[len(ds)-1].Sent != 8 {
		t.Fatalf("delivery %+v", ds[len(ds)-1])
	}
}

// A restart in the middle of a delivery sends only the parts not yet
// accepted: the text was, the file was not.
func TestFilesOutResumeAfterPart(t *testing.T) {
	r, dir := filesRig(t, func(text string) string { return text }, 1<<20)
	r.send(faketelegram.Incoming{From: ann, Document: []byte("keep"), FileName: "k.txt"})
	r.waitSent(42, 1)
	// sendDocument fails (the Bot API down) after the text went: the
	// retry sends the document, not the text again.
	r.fake.FailNext("sendDocument", 1, faketelegram.Fault{Status: 502, Description: "Bad Gateway"})
	entries, _ := os.ReadDir(filepath.Join(dir, "inbox"))
	r.send(faketelegram.Incoming{From: ann, Text: "again [[file: inbox/" + entries[0].Name() + "]]"})
	sent := r.waitSent(42, 3)
	time.Sleep(300 * time.Millisecond)
	sent = r.fake.Sent(42)
	if len(sent) != 3 || sent[1].Text != "again" || sent[2].Document == nil {
		t.Fatalf("sent %+v", sent)
	}
	ctx := context.Background()
	ds, _ := r.st.Deliveries(ctx, "telegram", "tg:42", 10)
	if last := ds[len(ds)-1]; last.Sent != 2 || len(last.PlatformIDs) != 2 {
		t.Fatalf("delivery %+v", last)
	}
}

// A name in inbox/ that is taken by a symbolic link is not written
// through; a file system failure is answered, not retried: the updates
// after it are taken in.
func TestAttachmentUnsavableDoesNotHold(t *testing.T) {
	r, dir := filesRig(t, echo, 1<<20)
	inbox := filepath.Join(dir, "inbox")
	if err := os.MkdirAll(inbox, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The fake numbers updates from 1.
	if err := os.Symlink(target, filepath.Join(inbox, "telegram-1-x.txt")); err != nil {
		t.Fatal(err)
	}
	r.send(faketelegram.Incoming{From: ann, Document: []byte("evil"), FileName: "x.txt"})
	r.send(faketelegram.Incoming{From: ann, Text: "next"})
	sent := r.waitSent(42, 2)
	if !strings.Contains(sent[0].Text, "could not save") || sent[1].Text != "echo: next" {
		t.Fatalf("sent %+v", sent)
	}
	if got, _ := os.ReadFile(target); string(got) != "mine" {
		t.Fatalf("written through the link: %q", got)
	}
	// The temporary file's place taken by a folder that cannot be
	// removed: a failure of the file system, whoever runs the test.
	if err := os.MkdirAll(filepath.Join(inbox, ".telegram-3-y.txt.part", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.send(faketelegram.Incoming{From: ann, Document: []byte("data"), FileName: "y.txt"})
	r.send(faketelegram.Incoming{From: ann, Text: "after"})
	sent = r.waitSent(42, 4)
	if !strings.Contains(sent[2].Text, "could not save") || sent[3].Text != "echo: after" {
		t.Fatalf("sent %+v", sent[2:])
	}
	if ms := r.messages("tg:42"); len(ms) != 2 {
		t.Fatalf("queued %+v", ms)
	}
}
