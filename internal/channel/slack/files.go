package slack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	slackapi "github.com/slack-go/slack"

	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// Files in and out, as Telegram does them (the channel package's files
// code). In: each file of a message from an allowed person is downloaded
// with the bot token (files.info gives its url_private_download; Slack
// answers the URL only with the header Authorization: Bearer xoxb-…) into
// the chat's inbox/ before the message is committed, under a name made of
// the channel, the message's ts, the file's id and its name made safe: a
// redelivery after a crash finds the same names, and the one message
// accepted names its files. Out: a reply's [[file: PATH]] markers are
// uploaded (files.getUploadURLExternal, the upload, then
// files.completeUploadExternal into the chat's channel and thread), each
// its own part after the text's.

// MaxSendFile is the largest file the channel uploads (Slack takes up to
// 1 GB).
const MaxSendFile = 1 << 30

// downloadTimeout bounds one file's download.
const downloadTimeout = 5 * time.Minute

// methodUpload is the upload's rate-limit key.
const methodUpload = "files.completeUploadExternal"

// FileRef is a file as a message event names it.
type FileRef struct {
	ID   string
	Name string
	Size int64 // in bytes, 0 when the event does not say
}

// refusal is a message with files the channel answers instead of
// accepting: the person is told why and nothing is queued.
type refusal struct{ text string }

func (r *refusal) Error() string { return r.text }

// filesOf is what a message event says of its files (those hosted by
// Slack: external files and files hidden by the workspace's limits have
// nothing to download).
func filesOf(fs []slackapi.File) []FileRef {
	var out []FileRef
	for _, f := range fs {
		if f.ID == "" || f.IsExternal || f.Mode == "external" || f.Mode == "hidden_by_limit" || f.Mode == "tombstone" {
			continue
		}
		out = append(out, FileRef{ID: f.ID, Name: f.Name, Size: int64(f.Size)})
	}
	return out
}

// acceptFiles saves d's files and returns the text to accept (d's text
// with one [attached: inbox/NAME] line per file). answered: a refusal was
// answered (once per message) and nothing is to be queued; an error is
// retried (Slack failing, the network).
func (c *Channel) acceptFiles(ctx context.Context, d Intent) (text string, answered bool, err error) {
	text, err = c.attach(ctx, d)
	var r *refusal
	if !errors.As(err, &r) {
		return text, false, err
	}
	if !c.firstTime(d) {
		c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateDuplicate)
		return "", true, nil
	}
	c.cfg.Log.Info("slack: refused a message's files", "channel", c.cfg.Name, "chat", d.Chat, "why", r.text)
	c.answer(ctx, d, r.text)
	c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateRefused)
	return "", true, nil
}

// attach downloads d's files into the chat's inbox and returns the text
// to accept. A *refusal is answered to the person; any other error is
// retried.
func (c *Channel) attach(ctx context.Context, d Intent) (string, error) {
	limit := c.cfg.MaxAttachment
	if limit <= 0 {
		limit = channel.DefaultMaxAttachment
	}
	if c.cfg.Folders == nil {
		return "", &refusal{UnsupportedText}
	}
	for _, f := range d.Files {
		if f.Size > limit {
			return "", &refusal{channel.TooBigText(f.Size, limit)}
		}
	}
	inbox, err := channel.OpenInbox(c.cfg.Folders, d.Chat)
	if err != nil {
		return "", &refusal{channel.SaveFailedText(err.Error())}
	}
	defer inbox.Close()
	text := d.Text
	var names []string // this message's files saved so far
	for _, f := range d.Files {
		name := channel.InboxNameKey(c.cfg.Name, d.TS+"-"+f.ID, f.Name)
		rel := channel.InboxDir + "/" + name
		done, err := channel.Saved(inbox, name)
		if err != nil {
			err = &refusal{channel.SaveFailedText(err.Error())}
		} else if !done {
			err = c.download(ctx, inbox, name, f.ID, limit)
		}
		if err != nil {
			// Refused: nothing is queued, so the files saved for it go
			// too. (Any other error is retried, and the retry finds them.)
			if r := (*refusal)(nil); errors.As(err, &r) {
				for _, n := range names {
					_ = inbox.Remove(n)
				}
			}
			return "", err
		}
		names = append(names, name)
		text = channel.AttachedText(text, rel)
	}
	return text, nil
}

// download saves file id into inbox/name: files.info for its size and
// URL, then the URL with the bot token, stopped past limit.
func (c *Channel) download(ctx context.Context, inbox *os.Root, name, id string, limit int64) error {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	info, _, _, err := c.api.GetFileInfoContext(ctx, id, 0, 0)
	if err != nil {
		var se slackapi.SlackErrorResponse
		if errors.As(err, &se) {
			// file_not_found, file_deleted, missing_scope…: asking again
			// gets the same answer.
			return &refusal{channel.SaveFailedText("Slack would not hand it over (" + se.Err + ")")}
		}
		return fmt.Errorf("files.info: %w", err)
	}
	if int64(info.Size) > limit {
		return &refusal{channel.TooBigText(int64(info.Size), limit)}
	}
	u := info.URLPrivateDownload
	if u == "" {
		u = info.URLPrivate
	}
	if u == "" {
		return &refusal{channel.SaveFailedText("Slack gave no address to download it from")}
	}
	err = channel.SaveInbox(inbox, name, limit, func(w io.Writer) error { return c.api.GetFileContext(ctx, u, w) })
	var (
		tb *channel.TooBigError
		se *channel.SaveError
		sc slackapi.StatusCodeError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tb):
		return &refusal{channel.TooBigText(0, limit)} // its size was not what files.info said
	case errors.As(err, &se):
		return &refusal{se.Error()}
	case errors.As(err, &sc) && sc.Code >= 400 && sc.Code < 500 && sc.Code != http.StatusTooManyRequests:
		return &refusal{channel.SaveFailedText(fmt.Sprintf("Slack would not hand it over (HTTP %d)", sc.Code))}
	case strings.Contains(err.Error(), "sign-in page"):
		return &refusal{channel.SaveFailedText("Slack would not hand it over (the bot cannot read it)")}
	}
	return fmt.Errorf("downloading a file: %w", err)
}

// Files are the paths of the files a delivery uploads after its text
// parts.
func Files(d store.ChannelDelivery) []string {
	if d.Kind == events.DeadLetter {
		return nil
	}
	_, files := channel.FileMarkers(d.Text)
	return files
}

// uploadCodes are the upload refusals no retry changes that concern the
// file itself: the person gets a note in its place.
var uploadCodes = map[string]bool{"file_too_large": true, "invalid_arguments": true, "file_upload_incomplete": true,
	"invalid_file_type": true, "file_uploads_disabled": true, "file_uploads_except_images_disabled": true}

// sendFiles uploads the file parts of a delivery from part from on (parts
// numbered after the text's n parts) into Slack channel ch and thread
// root, recording each as sent.
func (s sender) sendFiles(ctx context.Context, chat, ch, root string, paths []string, n, from int, sent func(string) error) error {
	for i := max(from, n); i < n+len(paths); i++ {
		id, err := s.sendFile(ctx, chat, ch, root, paths[i-n])
		if err != nil {
			return err
		}
		if err := sent(id); err != nil {
			return err
		}
	}
	return nil
}

// sendFile uploads the file path names in chat's working directory, or
// posts the note saying why not, and returns the id recorded for the
// part (the file's id, or the note's ts). An error is Slack's, retried or
// rate limited as a text part's is.
func (s sender) sendFile(ctx context.Context, chat, ch, root, path string) (string, error) {
	c := s.c
	note := func(reason string) (string, error) {
		opts := []slackapi.MsgOption{slackapi.MsgOptionText(Escape(channel.CouldNotSendText(path, reason)), false)}
		if root != "" {
			opts = append(opts, slackapi.MsgOptionTS(root))
		}
		_, ts, err := c.api.PostMessageContext(ctx, ch, opts...)
		if err != nil {
			return "", c.classify(methodPost, ch, err)
		}
		return ts, nil
	}
	if c.cfg.Folders == nil {
		return note("files are not available here")
	}
	dir, err := c.cfg.Folders.ChatDir(chat)
	if err != nil {
		return note("the working directory is not available")
	}
	f, size, err := channel.OpenOut(dir, path, MaxSendFile, "Slack")
	if err != nil {
		return note(err.Error())
	}
	defer f.Close()
	if w := c.heldFor(methodUpload, ch); w > 0 {
		return "", &channel.RateLimitedError{After: w, Err: errors.New(methodUpload + ": rate limited")}
	}
	base := filepath.Base(f.Name())
	sum, err := c.api.UploadFileContext(ctx, slackapi.UploadFileParameters{
		Reader: f, Filename: base, FileSize: int(size), Title: base, Channel: ch, ThreadTimestamp: root,
	})
	if err != nil {
		var se slackapi.SlackErrorResponse
		if errors.As(err, &se) && uploadCodes[se.Err] {
			return note("Slack refused it (" + se.Err + ")")
		}
		return "", c.classify(methodUpload, ch, err)
	}
	return sum.ID, nil
}
