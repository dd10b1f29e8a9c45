// The observer: what sessions report (lifecycle events, finished turns)
// becomes lifecycle log lines and metrics here, once.

package supervisor

import (
	"errors"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/store"
)

// observer turns session events into lifecycle log lines and metrics.
type observer struct{ s *Supervisor }

// daemonError is one resource error of the daemon's own.
type daemonError struct {
	at     time.Time
	reason string
}

// DaemonErrorWindow is how long a resource error of the daemon's own keeps
// its health degraded after the last one.
const DaemonErrorWindow = time.Minute

// storeFullError says why the store refuses writes for lack of space, or
// "": an accept was refused so (until one succeeds, or a
// DaemonErrorWindow passes without another), or a session waits to write
// for lack of space.
func (s *Supervisor) storeFullError(snaps []session.Snapshot) string {
	if e := s.storeFull.Load(); e != nil && s.clock.Now().Sub(e.at) <= DaemonErrorWindow {
		return e.reason
	}
	for _, snap := range snaps {
		if snap.StoreFull {
			return "chat " + snap.ChatID + ": " + snap.StoreError
		}
	}
	return ""
}

// noteAccept keeps what an accept's outcome says about the store's space.
func (s *Supervisor) noteAccept(err error) {
	switch {
	case err == nil:
		if s.storeFull.Load() != nil {
			s.storeFull.Store(nil)
		}
	case errors.Is(err, store.ErrNoSpace):
		s.storeFull.Store(&daemonError{at: s.clock.Now(), reason: "accepts refused: " + err.Error()})
	}
}

// daemonError returns the daemon's resource error of the last
// DaemonErrorWindow, or "".
func (s *Supervisor) daemonError() string {
	e := s.daemonErr.Load()
	if e == nil || s.clock.Now().Sub(e.at) > DaemonErrorWindow {
		return ""
	}
	return e.reason
}

func (o observer) Event(ev lifecycle.Event) {
	if ev.Kind == lifecycle.DaemonError {
		if o.s.daemonErr.Load() == nil || o.s.daemonError() == "" {
			o.s.log.Error("the daemon is out of a resource of its own; sessions retry without spending their restarts", "chat", ev.Chat, "err", ev.Detail)
		}
		o.s.daemonErr.Store(&daemonError{at: o.s.clock.Now(), reason: ev.Detail})
	}
	o.s.emit(ev)
	o.s.metrics.ObserveLifecycle(ev)
}

// emit writes a lifecycle event's line in the lifecycle log. A session's
// events are also counted (observer.Event); the daemon's own (an
// operator's retry or drop, a lost store, an orphan killed) have counters
// of their own. An event's feed form, if any, is written by the store with
// the change it reports (see lifecycle.Event.Feed).
func (s *Supervisor) emit(ev lifecycle.Event) { s.logs.Event(ev) }

func (o observer) Turn(chat string, d time.Duration, n int, err error) {
	outcome := "ok"
	if err != nil {
		outcome = agent.KindOf(err).String()
	} else {
		o.s.metrics.Done.Add(float64(n))
	}
	o.s.metrics.ObserveTurn(d, outcome)
}
