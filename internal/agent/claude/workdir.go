package claude

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf16"

	"github.com/dispatchd/dispatch/internal/safename"
)

// probeDir is the working directory of the API-health probe, below the
// base: no chat's folder can have this name (safename's names never start
// with '_' unless hashed, and hashed ones end in a hash).
const probeDir = "_probe"

// ChatDir is the working directory of chat's agent below base: every chat
// has its own, so that one chat's agent does not work among (or next to the
// stored conversations of) every other chat.
func ChatDir(base, chat string) string {
	return filepath.Join(base, safename.Of(chat))
}

// ensureWorkDir makes sure dir, base itself or a folder right below it,
// exists and is the daemon's own: a chat's folder is created 0700 when
// missing, and one that is a symbolic link (planted to send the agent into
// someone else's folder, with its CLAUDE.md and .claude/settings.json), is
// not a directory, belongs to another user or is writable by group or
// others is refused, never followed.
func ensureWorkDir(base, dir string) error {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	if dir == base {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; refusing to follow it (remove it if you did not make it)", dir)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by the daemon's user (uid %d)", dir, st.Uid, os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s: mode %04o lets group or others write in it; run chmod go-w %s", dir, perm, dir)
	}
	return nil
}

// maxSlug is the longest project folder name the CLI uses as it is;
// longer ones get a hash suffix this package does not compute.
const maxSlug = 200

// ProjectSlug is the name of the folder, under <config dir>/projects, in
// which the Claude Code CLI keeps the conversations started in dir: dir with
// every character other than an ASCII letter or digit replaced by '-' (per
// UTF-16 code unit, as the CLI does it in JavaScript). ok is false when
// the name is too long for the CLI to use as it is.
func ProjectSlug(dir string) (slug string, ok bool) {
	var b strings.Builder
	for _, r := range dir {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case utf16.IsSurrogate(r) || r > 0xffff:
			b.WriteString("--")
		default:
			b.WriteByte('-')
		}
	}
	return b.String(), b.Len() <= maxSlug
}

// ConfigDir is the CLI's configuration folder for an environment:
// $CLAUDE_CONFIG_DIR, else $HOME/.claude ("" when neither is set).
func ConfigDir(env []string) string {
	get := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	if d := get("CLAUDE_CONFIG_DIR"); d != "" {
		return d
	}
	if h := get("HOME"); h != "" {
		return filepath.Join(h, ".claude")
	}
	return ""
}

// adoptConversation makes conversation id resumable from dir: the CLI
// finds a conversation only under the project folder of the working
// directory it was started in, so one kept under another folder (the
// shared working directory of earlier versions, or a chat folder that was
// renamed) is moved to dir's, together with the folder of the same name
// that holds its attachments. moved is false when nothing had to move.
func adoptConversation(configDir, dir, id string) (moved bool, err error) {
	if configDir == "" || id == "" || strings.ContainsAny(id, `/\`) {
		return false, nil
	}
	slug, ok := ProjectSlug(dir)
	if !ok {
		return false, fmt.Errorf("working directory %s is too long for its conversations to be found; use a shorter agent.dir", dir)
	}
	projects := filepath.Join(configDir, "projects")
	dst := filepath.Join(projects, slug, id+".jsonl")
	if _, err := os.Lstat(dst); err == nil {
		return false, nil
	}
	found, _ := filepath.Glob(filepath.Join(projects, "*", id+".jsonl"))
	if len(found) == 0 {
		return false, nil
	}
	src := found[0]
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false, err
	}
	if err := move(src, dst); err != nil {
		return false, err
	}
	if extra := strings.TrimSuffix(src, ".jsonl"); isDir(extra) {
		_ = move(extra, strings.TrimSuffix(dst, ".jsonl"))
	}
	return true, nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// move renames src to dst, copying a regular file when they are on
// different file systems.
func move(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("move %s: %w", src, errors.Join(err, fs.ErrInvalid))
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return os.Remove(src)
}
