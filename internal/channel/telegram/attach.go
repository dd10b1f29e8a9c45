package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/channel"
)

// Attachments in: a photo (its largest size) or document an allowed person
// sends is downloaded into the chat's working directory, under inbox/,
// before the message is accepted, and the accepted text names it (see
// AttachedText). The file's name is derived from the channel, the update
// and the platform's file name made safe (InboxName): a crash after the
// download and before the accept downloads again to the same name, or finds
// the file already there, so the one message accepted names one file.

// Folders gives each chat's working directory: the agent's folder for the
// chat, where attachments are saved and from where files are sent back.
type Folders interface {
	ChatDir(chat string) (string, error)
}

// DefaultMaxAttachment is the largest attachment taken in when the
// channel sets none: the Bot API's own download limit.
const DefaultMaxAttachment = 20 << 20

// InboxDir is the folder, in a chat's working directory, attachments are
// saved in.
const InboxDir = "inbox"

// downloadTimeout bounds one attachment's download.
const downloadTimeout = 5 * time.Minute

// FileRef is an attachment as an update names it.
type FileRef struct {
	ID   string // the Bot API's file_id
	Name string // the name it was sent with ("photo.jpg" for photos)
	Size int64  // in bytes, 0 when the update does not say
}

// attachment is the photo (its largest size) or document m carries.
func attachment(m *models.Message) (FileRef, bool) {
	switch {
	case m.Document != nil && m.Document.FileID != "":
		return FileRef{ID: m.Document.FileID, Name: m.Document.FileName, Size: m.Document.FileSize}, true
	case len(m.Photo) > 0:
		best := m.Photo[0]
		for _, p := range m.Photo[1:] {
			if p.FileSize > best.FileSize || p.FileSize == best.FileSize && p.Width*p.Height > best.Width*best.Height {
				best = p
			}
		}
		return FileRef{ID: best.FileID, Name: "photo.jpg", Size: int64(best.FileSize)}, true
	}
	return FileRef{}, false
}

// maxNameBytes bounds the safe part of an inbox file's name.
const maxNameBytes = 100

// InboxName is the name an attachment is saved under in inbox/: the
// channel, the update id and the sender's file name reduced to
// [A-Za-z0-9._-] (other characters become '_', never a leading '.' or
// '-', at most 100 bytes keeping the extension, "file" when nothing is
// left). The platform's name is never trusted as a path: no separator
// survives, and the update id makes it unique in the chat.
func InboxName(channelName string, update int64, name string) string {
	var b strings.Builder
	last := byte(0)
	for _, r := range name {
		c := byte('_')
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			c = byte(r)
		}
		if c == '_' && last == '_' {
			continue
		}
		b.WriteByte(c)
		last = c
	}
	safe := strings.TrimLeft(b.String(), ".-_")
	if len(safe) > maxNameBytes {
		ext := filepath.Ext(safe)
		if len(ext) > 16 {
			ext = ""
		}
		safe = strings.TrimRight(safe[:maxNameBytes-len(ext)], ".") + ext
	}
	if strings.Trim(safe, "._-") == "" {
		safe = "file"
	}
	return channelName + "-" + strconv.FormatInt(update, 10) + "-" + safe
}

// AttachedText is the text accepted for a message with an attachment: the
// caption, then on a line of its own "[attached: inbox/NAME]" (rel is the
// path relative to the chat's working directory).
func AttachedText(caption, rel string) string {
	line := "[attached: " + rel + "]"
	if strings.TrimSpace(caption) == "" {
		return line
	}
	return caption + "\n" + line
}

// TooBigText refuses an attachment over the channel's limit (size 0: not
// known).
func TooBigText(size, limit int64) string {
	is := ""
	if size > 0 {
		is = "it is " + humanSize(size) + ", and "
	}
	return "That file is too big for me: " + is + "I take files up to " + humanSize(limit) +
		". Nothing was passed on; send a smaller file or a link."
}

// SaveFailedText answers an attachment that could not be saved.
func SaveFailedText(reason string) string {
	return "I could not save that file, so nothing was passed on: " + reason
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64), ".0") + " MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// refusal is an attachment the channel answers instead of accepting: the
// person is told why and nothing is queued.
type refusal struct{ text string }

func (r *refusal) Error() string { return r.text }

// attach downloads d's attachment for update into the chat's inbox and
// returns the text to accept. A *refusal is answered to the person and the
// update is passed over; any other error is retried (the network, the Bot
// API failing).
func (c *Channel) attach(ctx context.Context, update int64, d Decision) (string, error) {
	limit := c.cfg.MaxAttachment
	if limit <= 0 {
		limit = DefaultMaxAttachment
	}
	if c.cfg.Folders == nil {
		return "", &refusal{UnsupportedText}
	}
	if d.File.Size > limit {
		return "", &refusal{TooBigText(d.File.Size, limit)}
	}
	dir, err := c.cfg.Folders.ChatDir(ChatID(d.Chat))
	if err != nil {
		return "", &refusal{SaveFailedText(err.Error())}
	}
	inbox, err := ensureInbox(dir)
	if err != nil {
		return "", &refusal{SaveFailedText(err.Error())}
	}
	defer inbox.Close()
	name := InboxName(c.cfg.Name, update, d.File.Name)
	rel := InboxDir + "/" + name
	if done, err := saved(inbox, name); err != nil {
		return "", &refusal{SaveFailedText(err.Error())}
	} else if done {
		return AttachedText(d.Text, rel), nil // downloaded before a crash
	}
	dctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	f, err := c.bot.GetFile(dctx, &bot.GetFileParams{FileID: d.File.ID})
	if err != nil {
		if errors.Is(err, bot.ErrorBadRequest) {
			// "file is too big" (over the Bot API's 20 MB) or a bad id.
			if strings.Contains(err.Error(), "too big") {
				return "", &refusal{TooBigText(d.File.Size, min(limit, DefaultMaxAttachment))}
			}
			return "", &refusal{SaveFailedText("Telegram would not hand it over (" + redact(err, c.cfg.Token).Error() + ")")}
		}
		return "", redact(err, c.cfg.Token)
	}
	if f.FileSize > limit {
		return "", &refusal{TooBigText(f.FileSize, limit)}
	}
	err = saveInbox(inbox, name, limit, func(w io.Writer) error { return c.download(dctx, f.FilePath, w) })
	var (
		tb *tooBigError
		r  *refusal
	)
	switch {
	case errors.As(err, &tb):
		return "", &refusal{TooBigText(0, limit)} // its size is not known
	case errors.As(err, &r):
		return "", r
	case err != nil:
		return "", err
	}
	return AttachedText(d.Text, rel), nil
}

// acceptRefused answers an attachment refusal and moves the offset past
// the update: answered before the offset moves, so a crash between the
// two answers again, never not at all.
func (c *Channel) acceptRefused(ctx context.Context, next int64, chat int64, r *refusal) error {
	if _, err := c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: r.text}); err != nil {
		c.cfg.Log.Warn("telegram: could not answer", "channel", c.cfg.Name, "chat", chat, "err", redact(err, c.cfg.Token))
	}
	if err := c.cfg.Store.ChannelAdvance(ctx, c.cfg.Name, next); err != nil {
		return err
	}
	c.cfg.Metrics.Update(c.cfg.Name, channel.UpdateRefused)
	return nil
}

// download fetches file_path from the Bot API's file URL
// (<api_url>/file/bot<token>/<file_path>) into w.
func (c *Channel) download(ctx context.Context, filePath string, w io.Writer) error {
	u := c.cfg.APIURL + "/file/bot" + c.cfg.Token + "/" + (&url.URL{Path: filePath}).EscapedPath()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return redact(err, c.cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return redact(err, c.cfg.Token)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var r struct {
			Description string `json:"description"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&r)
		err := fmt.Errorf("downloading an attachment: HTTP %d %s", resp.StatusCode, r.Description)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			// Asking again gets the same answer: the person is told, and
			// the updates after this one are not held.
			return &refusal{SaveFailedText("Telegram would not hand it over (HTTP " + strconv.Itoa(resp.StatusCode) + ")")}
		}
		return err
	}
	_, err = io.Copy(w, resp.Body)
	return redact(err, c.cfg.Token)
}

// ensureInbox opens dir/inbox, making dir and it (0700) when missing. A
// folder that is a symbolic link, not a directory or not the daemon
// user's own is refused, never followed.
func ensureInbox(dir string) (*os.Root, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, InboxDir)} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := ownDir(d); err != nil {
			return nil, err
		}
	}
	return os.OpenRoot(filepath.Join(dir, InboxDir))
}

// ownDir refuses a folder that is a symbolic link, not a directory or
// another user's.
func ownDir(d string) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; refusing to follow it", filepath.Base(d))
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder", filepath.Base(d))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to the daemon's user", filepath.Base(d), st.Uid)
	}
	return nil
}

// saved reports whether inbox holds name already (a download finished
// before a crash): a regular file is it; anything else in its place (a
// symbolic link, a folder) is refused.
func saved(inbox *os.Root, name string) (bool, error) {
	fi, err := inbox.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s/%s exists and is not a regular file", InboxDir, name)
	}
	return true, nil
}

// tooBigError is a download that went past the limit.
type tooBigError struct{ size int64 }

func (e *tooBigError) Error() string {
	return fmt.Sprintf("attachment over the limit (%d bytes so far)", e.size)
}

// limitWriter fails once more than max bytes were written.
type limitWriter struct {
	w        io.Writer
	n, limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if l.n > l.limit {
		return 0, &tooBigError{size: l.n}
	}
	return l.w.Write(p)
}

// saveInbox writes what fetch yields (at most limit bytes) to inbox/name:
// into a private temporary file first (0600, created anew, never through
// a link), synced, then linked to name, so name appears only complete and
// never replaces a file that is there. A failure of the file system (a
// folder made read-only, a full disk) is a *refusal: asking again would
// hold every later update; fetch's errors are returned as they are.
func saveInbox(inbox *os.Root, name string, limit int64, fetch func(io.Writer) error) error {
	fsErr := func(err error) error { return &refusal{SaveFailedText(err.Error())} }
	tmp := "." + name + ".part"
	if err := inbox.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fsErr(err)
	}
	f, err := inbox.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fsErr(err)
	}
	defer inbox.Remove(tmp)
	lw := &limitWriter{w: f, limit: limit}
	err = fetch(lw)
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fsErr(err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fsErr(cerr)
	}
	if err != nil {
		return err
	}
	if err := inbox.Link(tmp, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if ok, serr := saved(inbox, name); ok {
				return nil
			} else if serr != nil {
				return fsErr(serr)
			}
		}
		return fsErr(err)
	}
	if d, err := inbox.Open("."); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
