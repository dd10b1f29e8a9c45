package faketelegram

import (
	"context"
	"net/http"
)

// Holding file downloads lets a test stop a bot in the middle of one: while
// held, a download (GET /file/bot<token>/<file_path>) sends the first half
// of the file, flushes it, and waits for the hold to be lifted before it
// sends the rest.

// HoldFiles holds (on) or lets go (off) the file downloads.
func (s *Server) HoldFiles(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdFiles = on
	s.notifyLocked()
}

// FilesHeld is how many downloads are waiting in the middle.
func (s *Server) FilesHeld() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filesHeld
}

// writeFile sends data, stopping half way while downloads are held. It
// returns early when the request or the server ends.
func (s *Server) writeFile(ctx context.Context, w http.ResponseWriter, data []byte) {
	s.mu.Lock()
	held := s.holdFiles
	s.mu.Unlock()
	if !held {
		w.Write(data)
		return
	}
	half := len(data) / 2
	w.Write(data[:half])
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.mu.Lock()
	s.filesHeld++
	s.notifyLocked()
	for s.holdFiles {
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		case <-s.done:
		}
		s.mu.Lock()
		if ctx.Err() != nil || s.closed {
			s.filesHeld--
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
	}
	s.filesHeld--
	s.notifyLocked()
	s.mu.Unlock()
	w.Write(data[half:])
}
