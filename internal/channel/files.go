package channel

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// Files in and out, the same on every platform. Attachments in: a file an
// allowed person sends is downloaded into the chat's working directory,
// under inbox/, before the message is accepted, and the accepted text
// names it (AttachedText). The file's name is derived from the channel,
// the platform's id of the message and the sender's file name made safe
// (InboxName): a crash after the download and before the accept downloads
// again to the same name, or finds the file already there, so the one
// message accepted names one file.
//
// Files out: a reply that names a file as [[file: PATH]] (PATH relative to
// the chat's working directory) has the marker taken out of its text
// (FileMarkers), and the file is sent after the text's parts, one part per
// marker, in the order named. A file that cannot be sent (outside the
// folder, missing, not a regular file, too big) is a short note in its
// place instead (CouldNotSendText), never an error that holds the chat.

// Folders gives each chat's working directory: the agent's folder for the
// chat, where attachments are saved and from where files are sent back.
type Folders interface {
	ChatDir(chat string) (string, error)
}

// DefaultMaxAttachment is the largest attachment taken in when the
// channel sets none (20 MiB, the Telegram Bot API's own download limit).
const DefaultMaxAttachment = 20 << 20

// InboxDir is the folder, in a chat's working directory, attachments are
// saved in.
const InboxDir = "inbox"

// maxNameBytes bounds the safe part of an inbox file's name.
const maxNameBytes = 100

// InboxName is the name an attachment is saved under in inbox/: the
// channel, the update id and the sender's file name reduced to
// [A-Za-z0-9._-] (other characters become '_', never a leading '.' or
// '-', at most 100 bytes keeping the extension, "file" when nothing is
// left). The platform's name is never trusted as a path: no separator
// survives, and the update id makes it unique in the chat.
func InboxName(channelName string, update int64, name string) string {
	return channelName + "-" + strconv.FormatInt(update, 10) + "-" + safeName(name)
}

// InboxNameKey is InboxName for a platform whose messages and files are
// named by strings (Slack: the message's ts and the file's id): key,
// reduced to [A-Za-z0-9._-] like the name, takes the update id's place.
func InboxNameKey(channelName, key, name string) string {
	return channelName + "-" + reduce(key) + "-" + safeName(name)
}

// reduce replaces every character outside [A-Za-z0-9._-] with '_', runs
// of '_' made one.
func reduce(s string) string {
	var b strings.Builder
	last := byte(0)
	for _, r := range s {
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
	return b.String()
}

// safeName is the sender's file name made one safe path element.
func safeName(name string) string {
	safe := strings.TrimLeft(reduce(name), ".-_")
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
	return safe
}

// AttachedText is the text accepted for a message with an attachment: the
// caption, then on a line of its own "[attached: inbox/NAME]" (rel is the
// path relative to the chat's working directory). Applied once per file,
// it names several.
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
		is = "it is " + HumanSize(size) + ", and "
	}
	return "That file is too big for me: " + is + "I take files up to " + HumanSize(limit) +
		". Nothing was passed on; send a smaller file or a link."
}

// SaveFailedText answers an attachment that could not be saved.
func SaveFailedText(reason string) string {
	return "I could not save that file, so nothing was passed on: " + reason
}

// HumanSize is n bytes for a person: "20 MiB", "1.5 MiB", "12 KiB".
func HumanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strings.TrimSuffix(strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64), ".0") + " MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// OpenInbox opens the inbox of chat's folder (EnsureInbox), where a
// message's files are saved before it is queued.
func OpenInbox(f Folders, chat string) (*os.Root, error) {
	dir, err := f.ChatDir(chat)
	if err != nil {
		return nil, err
	}
	return EnsureInbox(dir)
}

// EnsureInbox opens dir/inbox, making dir and it (0700) when missing. A
// folder that is a symbolic link, not a directory or not the daemon
// user's own is refused, never followed.
func EnsureInbox(dir string) (*os.Root, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, err
	}
	for _, d := range []string{dir, filepath.Join(dir, InboxDir)} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if err := OwnDir(d); err != nil {
			return nil, err
		}
	}
	return os.OpenRoot(filepath.Join(dir, InboxDir))
}

// OwnDir refuses a folder that is a symbolic link, not a directory or
// another user's.
func OwnDir(d string) error {
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

// Saved reports whether inbox holds name already (a download finished
// before a crash): a regular file is it; anything else in its place (a
// symbolic link, a folder) is refused. A temporary file left beside a
// saved one (the daemon killed between the link and the removal) is
// removed.
func Saved(inbox *os.Root, name string) (bool, error) {
	fi, err := inbox.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s/%s exists and is not a regular file", InboxDir, name)
	}
	_ = inbox.Remove(partName(name))
	return true, nil
}

// partName is the temporary file name is downloaded into.
func partName(name string) string { return "." + name + ".part" }

// TooBigError is a download that went past the limit.
type TooBigError struct{ Size int64 }

func (e *TooBigError) Error() string {
	return fmt.Sprintf("attachment over the limit (%d bytes so far)", e.Size)
}

// SaveError is a failure of the file system while saving an attachment (a
// folder made read-only, a full disk): asking again would hold every
// later message, so the channel answers it (its Error is the answer) and
// passes the message over.
type SaveError struct{ Err error }

func (e *SaveError) Error() string { return SaveFailedText(e.Err.Error()) }
func (e *SaveError) Unwrap() error { return e.Err }

// limitWriter fails once more than max bytes were written.
type limitWriter struct {
	w        io.Writer
	n, limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if l.n > l.limit {
		return 0, &TooBigError{Size: l.n}
	}
	return l.w.Write(p)
}

// SaveInbox writes what fetch yields (at most limit bytes, else a
// *TooBigError) to inbox/name: into a private temporary file first (0600,
// created anew, never through a link), synced, then linked to name, so
// name appears only complete and never replaces a file that is there. A
// failure of the file system is a *SaveError; fetch's errors are returned
// as they are.
func SaveInbox(inbox *os.Root, name string, limit int64, fetch func(io.Writer) error) error {
	fsErr := func(err error) error { return &SaveError{err} }
	tmp := partName(name)
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
			if ok, serr := Saved(inbox, name); ok {
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

// MaxFiles bounds the files one reply sends.
const MaxFiles = 10

var fileMarker = regexp.MustCompile(`\[\[file:[ \t]*([^\]\n]*?)[ \t]*\]\]`)

// FileMarkers splits a reply into its text without the [[file: PATH]]
// markers and the paths they name, in order (at most MaxFiles; later
// markers are left in the text). Blank lines a marker leaves are dropped.
func FileMarkers(text string) (rest string, paths []string) {
	locs := fileMarker.FindAllStringSubmatchIndex(text, MaxFiles)
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

// OpenOut opens path, named by the agent, for sending: it must be inside
// dir (relative to it, or absolute below it) once symbolic links are
// resolved, a regular file, not empty, and at most limit bytes (platform
// names who sets the limit in the reason). The error is the reason for
// the person.
func OpenOut(dir, path string, limit int64, platform string) (*os.File, int64, error) {
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
	if err := OwnDir(dir); errors.Is(err, fs.ErrNotExist) {
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
	case fi.Size() > limit:
		f.Close()
		return nil, 0, fmt.Errorf("it is %s, more than the %s %s takes from a bot", HumanSize(fi.Size()), HumanSize(limit), platform)
	case fi.Size() == 0:
		f.Close()
		return nil, 0, errors.New("it is empty")
	}
	return f, fi.Size(), nil
}
