package telegram

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
)

// Files out: a reply that names a file as [[file: PATH]] (PATH relative to
// the chat's working directory) has the marker taken out of its text, and
// the file is sent as a document after the text's parts, one part per
// marker, in the order named. A file that cannot be sent (outside the
// folder, missing, not a regular file, too big) is a short note in its
// place instead, "could not send file PATH: reason": never an error that
// holds the chat. The parts are a pure function of the reply's text, so a
// restart finds the same parts and sends only those not yet accepted.

// MaxSendFile is the largest file the Bot API takes from a bot (50 MB).
const MaxSendFile = 50 << 20

// maxFiles bounds the files one reply sends.
const maxFiles = 10

var fileMarker = regexp.MustCompile(`\[\[file:[ \t]*([^\]\n]*?)[ \t]*\]\]`)

// FileMarkers splits a reply into its text without the [[file: PATH]]
// markers and the paths they name, in order (at most 10; later markers
// are left in the text). Blank lines a marker leaves are dropped.
func FileMarkers(text string) (rest string, paths []string) {
	locs := fileMarker.FindAllStringSubmatchIndex(text, maxFiles)
	if len(locs) == 0 {
		return text, nil
	}
	var b strings.Builder
	last := 0
	for _, l := range locs {
		b.WriteString(text[last:l[0]])
		paths = append(paths, text[l[2]:l[3]])
		last = l[1]
	}
	b.WriteString(text[last:])
	lines := strings.Split(b.String(), "\n")
	out := lines[:0]
	for i, ln := range lines {
		if strings.TrimSpace(ln) == "" && i > 0 && strings.TrimSpace(lines[i-1]) == "" {
			continue
		}
		out = append(out, strings.TrimRight(ln, " \t"))
	}
	return strings.TrimSpace(strings.Join(out, "\n")), paths
}

// CouldNotSendText is the note sent in a file's place.
func CouldNotSendText(path, reason string) string {
	return "could not send file " + path + ": " + reason
}

// openOut opens path, named by the agent, for sending: it must be inside
// dir (relative to it, or absolute below it) once symbolic links are
// resolved, a regular file, and at most MaxSendFile bytes. The error is
// the reason for the person.
func openOut(dir, path string) (*os.File, int64, error) {
	if strings.TrimSpace(path) == "" {
		return nil, 0, errors.New("no path given")
	}
	rel := path
	if filepath.IsAbs(path) {
		r, err := filepath.Rel(dir, filepath.Clean(path))
		if err != nil {
			return nil, 0, errors.New("it is outside the working directory")
		}
		rel = r
	}
	rel = filepath.Clean(rel)
	if err := ownDir(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, 0, errors.New("no such file")
	} else if err != nil {
		return nil, 0, errors.New("the working directory is not usable: " + err.Error())
	}
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, 0, errors.New("it is outside the working directory")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, 0, errors.New("the working directory cannot be opened")
	}
	defer root.Close()
	// os.Root follows symbolic links only while they stay inside dir.
	// O_NONBLOCK: opening a named pipe the agent put there must not wait
	// for a writer (it is then refused as not a regular file).
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, errors.New("no such file")
	case err != nil && strings.Contains(err.Error(), "escapes"):
		return nil, 0, errors.New("it is outside the working directory")
	case errors.Is(err, fs.ErrPermission):
		return nil, 0, errors.New("permission denied")
	case err != nil:
		return nil, 0, errors.New("it cannot be opened")
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, 0, errors.New("it cannot be read")
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, 0, errors.New("it is not a regular file")
	case fi.Size() > MaxSendFile:
		f.Close()
		return nil, 0, fmt.Errorf("it is %s, more than the %s Telegram takes from a bot", humanSize(fi.Size()), humanSize(MaxSendFile))
	case fi.Size() == 0:
		f.Close()
		return nil, 0, errors.New("it is empty")
	}
	return f, fi.Size(), nil
}

// sendFile sends the file path names in chat's working directory as a
// document, or the note saying why not. It returns the id of the message
// sent; an error is the Bot API's (retried or rate-limited as a text
// part's would be).
func (s sender) sendFile(ctx context.Context, chatID string, chat int64, path string) (int, error) {
	note := func(reason string) (int, error) {
		m, err := s.c.bot.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: CouldNotSendText(path, reason)})
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
	f, _, err := openOut(dir, path)
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
