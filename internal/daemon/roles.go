package daemon

import (
	"log/slog"
	"sync"
)

// roles is the work a node does only while it holds a role (delivering
// webhooks, running a chat-app channel): each role's start and stop. On
// one machine every role is held from the start; in a cluster the node's
// manager tells set when this node gains or loses one. Each role is
// switched in a goroutine of its own, one switch at a time and always to
// the latest state asked for, so that a slow stop (a message being sent
// is let finish) never holds up the node's lease renewals.
type roles struct {
	log *slog.Logger

	mu     sync.Mutex
	byName map[string]*roleSwitch
	names  []string
	idle   *sync.Cond // a switch ended; on mu
}

// roleSwitch is one role's work and state; roles.mu.
type roleSwitch struct {
	start, stop func()
	// want is the state asked for, running the state the work is in;
	// busy: a goroutine is switching it; closed: it may not start again.
	want, running, busy, closed bool
}

func newRoles(log *slog.Logger) *roles {
	r := &roles{log: log, byName: map[string]*roleSwitch{}}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// add registers role's work; start and stop are called from one goroutine
// at a time, alternately.
func (r *roles) add(role string, start, stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byName[role] = &roleSwitch{start: start, stop: stop}
	r.names = append(r.names, role)
}

// set asks for role's work to run (held) or not. An unknown role is
// ignored.
func (r *roles) set(role string, held bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byName[role]
	if s == nil {
		return
	}
	s.want = held && !s.closed
	if s.busy || s.want == s.running {
		return
	}
	s.busy = true
	go r.switchRole(role, s)
}

// switchRole brings s to the state last asked for.
func (r *roles) switchRole(role string, s *roleSwitch) {
	r.mu.Lock()
	for s.want != s.running {
		on := s.want
		r.mu.Unlock()
		if on {
			r.log.Info("this node holds a role now: starting its work", "role", role)
			s.start()
		} else {
			r.log.Info("this node no longer holds a role: stopping its work", "role", role)
			s.stop()
		}
		r.mu.Lock()
		s.running = on
	}
	s.busy = false
	r.idle.Broadcast()
	r.mu.Unlock()
}

// holdAll runs every role's work: a single node holds them all.
func (r *roles) holdAll() {
	for _, n := range r.list() {
		r.set(n, true)
	}
}

func (r *roles) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

// closeAll stops every role's work for good and waits until it stopped.
func (r *roles) closeAll() { r.close(r.list()...) }

// close stops the named roles' work for good, and waits until it
// stopped.
func (r *roles) close(names ...string) {
	r.mu.Lock()
	for _, n := range names {
		if s := r.byName[n]; s != nil {
			s.closed = true
		}
	}
	r.mu.Unlock()
	for _, n := range names {
		r.set(n, false)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		for s := r.byName[n]; s != nil && s.busy; {
			r.idle.Wait()
		}
	}
}
