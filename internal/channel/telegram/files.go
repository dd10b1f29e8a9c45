package telegram

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/dispatchd/dispatch/internal/channel"
)

// Files out: a reply's [[file: PATH]] markers (channel.FileMarkers) are
// sent as documents after the text's parts, one part per marker, in the
// order named; a file that cannot be sent is a short note in its place
// (channel.CouldNotSendText). The parts are a pure function of the reply's
// text, so a restart finds the same parts and sends only those not yet
// accepted.

// MaxSendFile is the largest file the Bot API takes from a bot (50 MB).
const MaxSendFile = 50 << 20

// sendFile sends the file path names in chat's working directory as a
// document, or the note saying why not. It returns the id of the message
// sent; an error is the Bot API's (retried or rate-limited as a text
// part's would be).
func (s sender) sendFile(ctx context.Context, chatID string, chat int64, path string) (int, error) {
	note := func(reason string) (int, error) {
		m, err := s.c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: channel.CouldNotSendText(path, reason)})
		if err != nil {
			return 0, classify(redact(err, s.c.cfg.Token))
		}
		return m.ID, nil
	}
	if s.c.cfg.Folders == nil {
		return note("files are not available here")
	}
	dir, err := s.c.cfg.Folders.ChatDir(chatID)
	if err != nil {
		return note("the working directory is not available")
	}
	f, _, err := channel.OpenOut(dir, path, MaxSendFile, "Telegram")
	if err != nil {
		return note(err.Error())
	}
	defer f.Close()
	m, err := s.c.bot.SendDocument(ctx, &bot.SendDocumentParams{ChatID: chat,
		Document: &models.InputFileUpload{Filename: filepath.Base(f.Name()), Data: f}})
	if err != nil {
		if errors.Is(err, bot.ErrorBadRequest) || strings.Contains(err.Error(), "Request Entity Too Large") || strings.Contains(err.Error(), "413") {
			return note("Telegram refused it (" + redact(err, s.c.cfg.Token).Error() + ")")
		}
		return 0, classify(redact(err, s.c.cfg.Token))
	}
	return m.ID, nil
}

// sendFiles sends the file parts of a delivery from part from on (parts
// numbered after the text's n parts), recording each as sent.
func (s sender) sendFiles(ctx context.Context, chatID string, chat int64, paths []string, n, from int, sent func(string) error) error {
	for i := max(from, n); i < n+len(paths); i++ {
		id, err := s.sendFile(ctx, chatID, chat, paths[i-n])
		if err != nil {
			return err
		}
		if err := sent(strconv.Itoa(id)); err != nil {
			return err
		}
	}
	return nil
}
