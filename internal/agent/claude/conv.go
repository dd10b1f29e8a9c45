package claude

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/store"
)

// Conversations keeps chats' conversation files beside the machine (the
// database several nodes share), so that a chat's conversation moves with
// the chat: the CLI keeps a conversation in its project folder,
// <config dir>/projects/<slug of the working directory>/ (the transcript
// <session id>.jsonl and a folder of the same name beside it). After every
// turn the folder's changes are saved (what a file gained since the last
// save, or the whole file when it changed otherwise), and before a
// --resume the saved files are put back where they differ.
type Conversations interface {
	ConversationFiles(ctx context.Context, chat string) ([]store.ConvFile, error)
	SaveConversation(ctx context.Context, chat string, changes []store.ConvChange) error
	LoadConversation(ctx context.Context, chat string) (map[string][]byte, error)
}

// convTimeout bounds one save or restore.
const convTimeout = 20 * time.Second

// projectDir is the CLI's project folder for the working directory dir,
// under the config dir of env ("" when it cannot be known).
func projectDir(env []string, dir string) string {
	cd := ConfigDir(env)
	slug, ok := ProjectSlug(dir)
	if cd == "" || dir == "" || !ok {
		return ""
	}
	return filepath.Join(cd, "projects", slug)
}

// readProject reads every regular file below pdir: relative path → content.
func readProject(pdir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := filepath.WalkDir(pdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == pdir {
				return filepath.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(pdir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	return out, err
}

// saveConversation saves what changed in chat's project folder since the
// last save.
func saveConversation(ctx context.Context, cs Conversations, chat, pdir string) (int, error) {
	local, err := readProject(pdir)
	if err != nil {
		return 0, err
	}
	saved, err := cs.ConversationFiles(ctx, chat)
	if err != nil {
		return 0, err
	}
	have := map[string]store.ConvFile{}
	for _, f := range saved {
		have[f.Path] = f
	}
	var changes []store.ConvChange
	bytesOut := 0
	for p, b := range local {
		sum := sha256.Sum256(b)
		f, ok := have[p]
		if ok && f.Size == int64(len(b)) && bytes.Equal(f.Hash, sum[:]) {
			continue
		}
		c := store.ConvChange{Path: p, Size: int64(len(b)), Hash: sum[:]}
		if ok && f.Size < int64(len(b)) {
			if pre := sha256.Sum256(b[:f.Size]); bytes.Equal(pre[:], f.Hash) {
				c.Offset, c.Data = f.Size, b[f.Size:] // appended to
			}
		}
		if c.Data == nil {
			c.Replace, c.Data = true, b
		}
		bytesOut += len(c.Data)
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return 0, nil
	}
	return bytesOut, cs.SaveConversation(ctx, chat, changes)
}

// restoreConversation puts chat's saved files into its project folder
// where the local copy is missing or is not the saved content followed by
// more (a local copy that is ahead of the database is kept).
func restoreConversation(ctx context.Context, cs Conversations, chat, pdir string) (int, error) {
	saved, err := cs.LoadConversation(ctx, chat)
	if err != nil || len(saved) == 0 {
		return 0, err
	}
	n := 0
	for rel, data := range saved {
		if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains("/"+rel+"/", "/../") {
			return n, fmt.Errorf("saved conversation file %q: not a relative path", rel)
		}
		p := filepath.Join(pdir, filepath.FromSlash(rel))
		if cur, err := os.ReadFile(p); err == nil && len(cur) >= len(data) && bytes.Equal(cur[:len(data)], data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return n, err
		}
		tmp := p + ".dispatch-restore"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return n, err
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return n, err
		}
		n++
	}
	return n, nil
}
