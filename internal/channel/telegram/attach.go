package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/channel"
)

// Attachments in: a photo (its largest size) or document an allowed person
// sends is downloaded into the chat's inbox/ before the message is
// accepted, as the channel package's files code describes (InboxName,
// SaveInbox, AttachedText).

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
		limit = channel.DefaultMaxAttachment
	}
	if c.cfg.Folders == nil {
		return "", &refusal{UnsupportedText}
	}
	if d.File.Size > limit {
		return "", &refusal{channel.TooBigText(d.File.Size, limit)}
	}
	inbox, err := channel.OpenInbox(c.cfg.Folders, ChatID(d.Chat))
	if err != nil {
		return "", &refusal{channel.SaveFailedText(err.Error())}
	}
	defer inbox.Close()
	name := channel.InboxName(c.cfg.Name, update, d.File.Name)
	rel := channel.InboxDir + "/" + name
	if done, err := channel.Saved(inbox, name); err != nil {
		return "", &refusal{channel.SaveFailedText(err.Error())}
	} else if done {
		return channel.AttachedText(d.Text, rel), nil // downloaded before a crash
	}
	dctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	f, err := c.bot.GetFile(dctx, &bot.GetFileParams{FileID: d.File.ID})
	if err != nil {
		if errors.Is(err, bot.ErrorBadRequest) {
			// "file is too big" (over the Bot API's 20 MB) or a bad id.
			if strings.Contains(err.Error(), "too big") {
				return "", &refusal{channel.TooBigText(d.File.Size, min(limit, channel.DefaultMaxAttachment))}
			}
			return "", &refusal{channel.SaveFailedText("Telegram would not hand it over (" + redact(err, c.cfg.Token).Error() + ")")}
		}
		return "", redact(err, c.cfg.Token)
	}
	if f.FileSize > limit {
		return "", &refusal{channel.TooBigText(f.FileSize, limit)}
	}
	err = channel.SaveInbox(inbox, name, limit, func(w io.Writer) error { return c.download(dctx, f.FilePath, w) })
	var (
		tb *channel.TooBigError
		se *channel.SaveError
		r  *refusal
	)
	switch {
	case errors.As(err, &tb):
		return "", &refusal{channel.TooBigText(0, limit)} // its size is not known
	case errors.As(err, &se):
		return "", &refusal{se.Error()}
	case errors.As(err, &r):
		return "", r
	case err != nil:
		return "", err
	}
	return channel.AttachedText(d.Text, rel), nil
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
			return &refusal{channel.SaveFailedText("Telegram would not hand it over (HTTP " + strconv.Itoa(resp.StatusCode) + ")")}
		}
		return err
	}
	_, err = io.Copy(w, resp.Body)
	return redact(err, c.cfg.Token)
}
