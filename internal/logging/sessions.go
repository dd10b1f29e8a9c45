package logging

import (
	"container/list"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/DeRuina/timberjack"

	"github.com/dispatchd/dispatch/internal/fsafe"
)

// sessionFiles keeps at most max session log files open, closing the least
// recently used one when another chat writes. A file being written to is
// pinned and never closed under its writer, so the limit can be exceeded
// briefly by the number of concurrent writes.
type sessionFiles struct {
	dir     string
	max     int
	newFile func(path string) *timberjack.Logger

	mu     sync.Mutex
	open   map[string]*list.Element // SafeName -> element of lru
	lru    *list.List               // of *sessionFile, most recently used first
	closed bool
}

type sessionFile struct {
	name string
	w    *timberjack.Logger
	refs int // writes in progress
}

func newSessionFiles(dir string, limit int, newFile func(string) *timberjack.Logger) *sessionFiles {
	return &sessionFiles{
		dir:     dir,
		max:     max(limit, 1),
		newFile: newFile,
		open:    make(map[string]*list.Element),
		lru:     list.New(),
	}
}

// write appends p to the file of the named session, opening it if needed.
func (s *sessionFiles) write(name string, p []byte) (int, error) {
	f, err := s.acquire(name)
	if err != nil {
		return 0, err
	}
	defer s.release(f)
	return f.w.Write(p)
}

func (s *sessionFiles) acquire(name string) (*sessionFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, os.ErrClosed
	}
	var f *sessionFile
	if e, ok := s.open[name]; ok {
		s.lru.MoveToFront(e)
		f = e.Value.(*sessionFile)
	} else {
		// timberjack opens the file itself on the first Write; it must
		// not be a link planted to make the daemon write elsewhere.
		path := filepath.Join(s.dir, name+".log")
		if err := fsafe.CheckFile(path); err != nil {
			return nil, err
		}
		f = &sessionFile{name: name, w: s.newFile(path)}
		s.open[name] = s.lru.PushFront(f)
	}
	f.refs++
	return f, nil
}

// release unpins f and closes least recently used idle files beyond max.
// Closing under the lock keeps a reopen of the same file from racing the
// close of its previous writer.
func (s *sessionFiles) release(f *sessionFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.refs--
	for e := s.lru.Back(); e != nil && s.lru.Len() > s.max; {
		prev := e.Prev()
		if old := e.Value.(*sessionFile); old.refs == 0 {
			s.lru.Remove(e)
			delete(s.open, old.name)
			_ = old.w.Close() // nothing to report to; a later write reopens
		}
		e = prev
	}
}

// close closes every open file; later writes fail with os.ErrClosed.
func (s *sessionFiles) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for e := s.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*sessionFile).w.Close())
	}
	s.lru.Init()
	clear(s.open)
	return errors.Join(errs...)
}

// openCount reports how many session writers are cached (for tests).
func (s *sessionFiles) openCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// sessionWriter is the io.Writer behind a Session logger. It holds no file
// itself, so it survives its file being closed by the LRU.
type sessionWriter struct {
	files *sessionFiles
	name  string
}

func (w *sessionWriter) Write(p []byte) (int, error) { return w.files.write(w.name, p) }
