// Package logging owns the daemon's log files under <state_dir>/logs: the
// manager log, the session lifecycle log and one log per chat in sessions/.
// Every file is written as slog text lines and rotated by size with
// timberjack.
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/DeRuina/timberjack"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/fsafe"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/safename"
)

const (
	// maxOpenSessions bounds the session log files open at once; there can
	// be thousands of chats but only about 1024 file descriptors. Past it
	// every write to a closed file reopens it, and each open scans the log
	// directory for old backups: at 64, a hundred busy chats (the Python
	// original's benchmark shape) spent an eighth of the daemon's CPU
	// there. 256 leaves three quarters of 1024 to everything else.
	maxOpenSessions = 256
	// defaultMaxSizeMB is used when the configured size is not positive.
	defaultMaxSizeMB = 20
	fileMode         = 0o600 // logs hold message text
	dirMode          = 0o700
)

// Logs is the set of open log files. It is safe for concurrent use.
type Logs struct {
	manager   *slog.Logger
	lifecycle *slog.Logger // writes to the lifecycle file and the manager log
	level     slog.Level

	managerW   *timberjack.Logger
	lifecycleW *timberjack.Logger
	sessions   *sessionFiles
}

// ManagerPath is the daemon's own log file.
func ManagerPath(stateDir string) string {
	return filepath.Join(stateDir, "logs", "manager.log")
}

// LifecyclePath is the log with one line per session start, stop, restart,
// reap, failure and the like.
func LifecyclePath(stateDir string) string {
	return filepath.Join(stateDir, "logs", "session_lifecycle.log")
}

// SessionPath is the log file of one chat; the chat id is never used raw.
func SessionPath(stateDir, chat string) string {
	return filepath.Join(sessionsDir(stateDir), SafeName(chat)+".log")
}

func sessionsDir(stateDir string) string {
	return filepath.Join(stateDir, "logs", "sessions")
}

// ParseLevel parses a configured level: debug, info, warn or error, in any
// case ("" means info). Offsets such as "info+2" are accepted as in slog.
func ParseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return slog.LevelInfo, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Open creates <stateDir>/logs and <stateDir>/logs/sessions and opens the
// manager and lifecycle logs, so that an unwritable state dir fails here
// rather than silently later. When stderr is not nil, manager lines are also
// written there (a daemon in the foreground).
func Open(stateDir string, cfg config.Log, stderr io.Writer) (*Logs, error) {
	return open(stateDir, cfg, stderr, maxOpenSessions)
}

// open is Open with the size of the session file cache as a knob for tests.
func open(stateDir string, cfg config.Log, stderr io.Writer, maxOpen int) (*Logs, error) {
	level, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(sessionsDir(stateDir), dirMode); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// Logs hold message texts: their folders must be the daemon's own, and
	// no log file may be a link planted to make the daemon write elsewhere.
	for _, dir := range []string{filepath.Dir(ManagerPath(stateDir)), sessionsDir(stateDir)} {
		if err := fsafe.CheckDir("log directory", dir); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{ManagerPath(stateDir), LifecyclePath(stateDir)} {
		if err := fsafe.CheckFile(f); err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
	}
	newFile := func(path string) *timberjack.Logger {
		size := cfg.MaxSizeMB
		if size <= 0 {
			size = defaultMaxSizeMB
		}
		return &timberjack.Logger{
			Filename:   path,
			MaxSize:    size,
			MaxBackups: max(cfg.MaxFiles, 0), // 0 keeps every backup
			FileMode:   fileMode,
		}
	}
	l := &Logs{
		level:      level,
		managerW:   newFile(ManagerPath(stateDir)),
		lifecycleW: newFile(LifecyclePath(stateDir)),
		sessions:   newSessionFiles(sessionsDir(stateDir), maxOpen, newFile),
	}
	// An empty write opens (creates) the file now.
	for _, w := range []*timberjack.Logger{l.managerW, l.lifecycleW} {
		if _, err := w.Write(nil); err != nil {
			return nil, errors.Join(fmt.Errorf("open log: %w", err), l.Close())
		}
	}

	opts := &slog.HandlerOptions{Level: level}
	manager := slog.Handler(slog.NewTextHandler(l.managerW, opts))
	if stderr != nil {
		manager = slog.NewMultiHandler(manager, slog.NewTextHandler(stderr, opts))
	}
	l.manager = slog.New(manager)
	// The lifecycle file records every event whatever the configured level.
	all := &slog.HandlerOptions{Level: slog.LevelDebug}
	l.lifecycle = slog.New(slog.NewMultiHandler(slog.NewTextHandler(l.lifecycleW, all), manager))
	return l, nil
}

// Manager returns the logger of logs/manager.log.
func (l *Logs) Manager() *slog.Logger { return l.manager }

// Event records a lifecycle event: one line in logs/session_lifecycle.log
// (event=<kind> chat=<chat> reason=<detail>), the same line in the manager
// log, and one in the chat's own log (so `dispatch logs CHAT` shows its
// starts, restarts and reaps), at the level of its kind (Kind.Level).
func (l *Logs) Event(ev lifecycle.Event, attrs ...slog.Attr) {
	l.write(ev.Kind.Level(), ev.Attrs(), ev.Chat, attrs)
}

// Lifecycle records an event known only by its name, at INFO: for writers
// without a typed lifecycle.Event. The daemon's own events go through
// Event.
func (l *Logs) Lifecycle(event, chat, reason string, attrs ...slog.Attr) {
	l.write(slog.LevelInfo, []slog.Attr{slog.String("event", event), slog.String("chat", chat), slog.String("reason", reason)}, chat, attrs)
}

// write logs one lifecycle line; base is event, chat, reason in that order.
func (l *Logs) write(level slog.Level, base []slog.Attr, chat string, attrs []slog.Attr) {
	all := append(base, attrs...)
	l.lifecycle.LogAttrs(context.Background(), level, "lifecycle", all...)
	if chat != "" {
		// the chat's own log: its logger carries chat= already
		sess := append([]slog.Attr{base[0], base[2]}, attrs...)
		l.Session(chat).LogAttrs(context.Background(), level, "lifecycle", sess...)
	}
}

// Session returns the logger of chat's file, logs/sessions/<SafeName>.log;
// its lines carry chat=<id>. The file is opened on the first write and may
// be closed again when other chats need the descriptor; the logger keeps
// working and reopens it on its next write. Lines written after Close are
// dropped.
func (l *Logs) Session(chat string) *slog.Logger {
	w := &sessionWriter{files: l.sessions, name: SafeName(chat)}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: l.level})
	return slog.New(h).With(slog.String("chat", chat))
}

// Close closes every log file and stops timberjack's background goroutines.
// Lines logged to Manager or Lifecycle afterwards are still appended, but
// without rotation; session lines are dropped. Close is idempotent.
func (l *Logs) Close() error {
	return errors.Join(l.sessions.close(), l.managerW.Close(), l.lifecycleW.Close())
}

// SafeName maps a chat id to the name of its log file (without extension);
// see safename.Of.
func SafeName(chat string) string { return safename.Of(chat) }
