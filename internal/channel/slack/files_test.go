package slack_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/channel/slack"
	"github.com/dispatchd/dispatch/internal/fakeslack"
	"github.com/dispatchd/dispatch/internal/safename"
)

// folders keeps every chat's working directory below one base, as the
// daemon does.
type folders struct{ base string }

func (f folders) ChatDir(chat string) (string, error) {
	return filepath.Join(f.base, safename.Of(chat)), nil
}

// newFilesRig is a rig whose channel has chat folders below base and
// takes files up to limit bytes (0: the default).
func newFilesRig(t *testing.T, reply func(string) string, limit int64, opts ...fakeslack.Option) (*rig, string) {
	t.Helper()
	base := t.TempDir()
	r := newRig(t, reply, opts...)
	r.ch.Stop()
	r.tweak = func(c *slack.Config) { c.Folders, c.MaxAttachment = folders{base}, limit }
	r.start()
	return r, base
}

func inbox(t *testing.T, base, chat string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(base, safename.Of(chat), "inbox"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return es
}

// TestFilesIn: a message's files are saved into the chat's inbox before
// the message is queued, and its text names them; a file-only message is
// queued too; a redelivered envelope finds the same files (one message,
// no second copy).
func TestFilesIn(t *testing.T) {
	r, base := newFilesRig(t, echo, 0)
	r.fake.HoldAcks(true)
	p := r.post(fakeslack.Incoming{User: ann, Text: "see these", Files: []fakeslack.FileIn{
		{Name: "notes.txt", Data: []byte("first")}, {Name: "../../etc/passwd", Data: []byte("second")}}})
	r.waitFor("a redelivery", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.RetryAttempt >= 1
	})
	r.fake.HoldAcks(false)
	chat := slack.ChatID(r.fake.TeamID(), p.Channel)
	r.waitDelivered(chat, 1)
	ms := r.messages(chat)
	if len(ms) != 1 {
		t.Fatalf("stored %d messages: %+v", len(ms), ms)
	}
	n1 := "slack-" + p.TS + "-" + p.Files[0] + "-notes.txt"
	n2 := "slack-" + p.TS + "-" + p.Files[1] + "-etc_passwd"
	want := "see these\n[attached: inbox/" + n1 + "]\n[attached: inbox/" + n2 + "]"
	if ms[0].Text != want {
		t.Fatalf("text %q, want %q", ms[0].Text, want)
	}
	es := inbox(t, base, chat)
	if len(es) != 2 {
		t.Fatalf("inbox %v", es)
	}
	for name, data := range map[string]string{n1: "first", n2: "second"} {
		got, err := os.ReadFile(filepath.Join(base, safename.Of(chat), "inbox", name))
		if err != nil || string(got) != data {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}

	// Files alone.
	p2 := r.post(fakeslack.Incoming{User: ann, Files: []fakeslack.FileIn{{Name: "a.csv", Data: []byte("a,b")}}})
	r.waitDelivered(chat, 2)
	var got []string
	for _, m := range r.messages(chat) {
		got = append(got, m.Text)
	}
	if w := "[attached: inbox/slack-" + p2.TS + "-" + p2.Files[0] + "-a.csv]"; !strings.Contains(strings.Join(got, "|"), w) {
		t.Fatalf("messages %q lack %q", got, w)
	}
}

// TestFilesInTooBig: a file over max_attachment is answered with the
// limit, and nothing is queued or kept; the next message goes through.
func TestFilesInTooBig(t *testing.T) {
	r, base := newFilesRig(t, echo, 10)
	p := r.post(fakeslack.Incoming{User: ann, Text: "big", Files: []fakeslack.FileIn{
		{Name: "ok.txt", Data: []byte("small")}, {Name: "big.bin", Data: make([]byte, 11)}}})
	chat := slack.ChatID(r.fake.TeamID(), p.Channel)
	msgs := r.botMessages(p.Channel, 1)
	if !strings.Contains(msgs[0].Text, "too big") || !strings.Contains(msgs[0].Text, "10 bytes") {
		t.Fatalf("answer %q", msgs[0].Text)
	}
	r.waitFor("the acknowledgement", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.Acked
	})
	p2 := r.post(fakeslack.Incoming{User: ann, Text: "fine", Files: []fakeslack.FileIn{{Name: "ok.txt", Data: []byte("0123456789")}}})
	r.waitDelivered(chat, 1)
	ms := r.messages(chat)
	if len(ms) != 1 || !strings.HasPrefix(ms[0].Text, "fine\n[attached: inbox/slack-"+p2.TS) {
		t.Fatalf("stored %+v", ms)
	}
	if es := inbox(t, base, chat); len(es) != 1 {
		t.Fatalf("inbox %v", es)
	}
}

// TestFilesInWithoutFolders: without chat folders, files are answered as
// not readable.
func TestFilesInWithoutFolders(t *testing.T) {
	r := newRig(t, echo)
	p := r.post(fakeslack.Incoming{User: ann, Text: "x", Files: []fakeslack.FileIn{{Name: "a.txt", Data: []byte("a")}}})
	if m := r.botMessages(p.Channel, 1); m[0].Text != slack.UnsupportedText {
		t.Fatalf("answer %q", m[0].Text)
	}
}

// TestFilesOut: a reply's [[file: PATH]] markers leave its text; each file
// is uploaded into the thread after the text, and a file outside the
// folder, missing or not a regular file is a note in its place.
func TestFilesOut(t *testing.T) {
	var outside string
	r, base := newFilesRig(t, func(string) string {
		return "Here you are:\n[[file: out/report.csv]]\n[[file: ../../secret.txt]]\n[[file: " + outside +
			"]]\n[[file: nope.txt]]\n[[file: out]]\nbye"
	}, 0)
	outside = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := r.post(fakeslack.Incoming{User: ann, Channel: "C0GENERAL", Mention: true, Text: "report please"})
	chat := slack.ChatID(r.fake.TeamID(), p.Channel)
	dir := filepath.Join(base, safename.Of(chat), "out")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.csv"), []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ds := r.waitDelivered(chat, 1)
	if ds[0].Sent != 6 {
		t.Fatalf("parts sent %d, want 6 (text, file, 4 notes)", ds[0].Sent)
	}
	th := r.fake.Thread(p.Channel, p.TS)
	var got []string
	for _, m := range th[1:] {
		got = append(got, m.Text)
	}
	if len(th) != 7 || th[1].Text != "Here you are:\n\nbye" || len(th[2].Files) != 1 {
		t.Fatalf("thread %q", got)
	}
	for i, want := range []string{"../../secret.txt: it is outside the working directory", outside + ": it is outside the working directory",
		"nope.txt: no such file", "out: it is not a regular file"} {
		if th[3+i].Text != "could not send file "+want {
			t.Fatalf("note %d: %q", i, th[3+i].Text)
		}
	}
	ups := r.fake.Uploads()
	if len(ups) != 1 || ups[0].Name != "report.csv" || ups[0].ThreadTS != p.TS || ups[0].Channel != p.Channel {
		t.Fatalf("uploads %+v", ups)
	}
	if data, _ := r.fake.FileData(ups[0].FileID); !bytes.Equal(data, []byte("a,b\n1,2\n")) {
		t.Fatalf("uploaded %q", data)
	}
}

// TestFilesOutResume: an upload that fails is retried alone: the text
// part already accepted is not sent again.
func TestFilesOutResume(t *testing.T) {
	r, base := newFilesRig(t, func(string) string { return "the file: [[file: f.txt]]" }, 0)
	r.fake.FailNext("files.completeUploadExternal", 1, "fatal_error")
	p := r.post(fakeslack.Incoming{User: ann, Text: "go"})
	chat := slack.ChatID(r.fake.TeamID(), p.Channel)
	dir := filepath.Join(base, safename.Of(chat))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	ds := r.waitDelivered(chat, 1)
	if ds[0].Sent != 2 {
		t.Fatalf("parts %d", ds[0].Sent)
	}
	ms := r.fake.BotMessages(p.Channel)
	if len(ms) != 2 || ms[0].Text != "the file:" || len(ms[1].Files) != 1 || len(r.fake.Uploads()) != 1 {
		t.Fatalf("messages %+v uploads %+v", ms, r.fake.Uploads())
	}
}

// TestFilesInLaterRefusal: when a later file of a message is refused
// (Slack will not hand it over), the answer says so, nothing is queued,
// and the files saved for that message before it are removed.
func TestFilesInLaterRefusal(t *testing.T) {
	r, base := newFilesRig(t, echo, 0)
	r.fake.FailAfter("files.info", 1, 1, "file_deleted")
	p := r.post(fakeslack.Incoming{User: ann, Text: "two", Files: []fakeslack.FileIn{
		{Name: "first.txt", Data: []byte("first")}, {Name: "second.txt", Data: []byte("second")}}})
	chat := slack.ChatID(r.fake.TeamID(), p.Channel)
	msgs := r.botMessages(p.Channel, 1)
	if !strings.Contains(msgs[0].Text, "file_deleted") {
		t.Fatalf("answer %q", msgs[0].Text)
	}
	r.waitFor("the acknowledgement", func() bool {
		e, _ := r.fake.Envelope(p.Envelopes[0])
		return e.Acked
	})
	if ms := r.messages(chat); len(ms) != 0 {
		t.Fatalf("stored %+v", ms)
	}
	if es := inbox(t, base, chat); len(es) != 0 {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Fatalf("inbox keeps %v", names)
	}
}
