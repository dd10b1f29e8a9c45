package supervisor

import "sync"

// sharedProbe runs a probe for callers that each need a run that started
// after they asked, and lets the callers that ask while one runs share the
// next run instead of each running their own. Accepts use it for the
// store's identity probe (two stat calls): the accepts a commit answered
// come back together, and one probe then serves the lot, each still
// checked by a probe that began after it arrived and before its write.
// The zero value is ready to use.
type sharedProbe struct {
	mu      sync.Mutex
	running bool
	idle    chan struct{} // closed when the running probe ends
	next    *probeRun     // the run the callers arriving now wait for; nil: none yet
	waiting int           // callers waiting for a running probe to end (for tests)
}

type probeRun struct {
	started bool
	done    chan struct{} // closed once err is set
	err     error
}

// Do returns the result of a run of probe that started after Do was called.
func (p *sharedProbe) Do(probe func() error) error {
	p.mu.Lock()
	if p.next == nil {
		p.next = &probeRun{done: make(chan struct{})}
	}
	r := p.next
	for {
		if r.started { // another caller of the same run started it
			p.mu.Unlock()
			<-r.done
			return r.err
		}
		if !p.running {
			break
		}
		idle := p.idle
		p.waiting++
		p.mu.Unlock()
		<-idle
		p.mu.Lock()
		p.waiting--
	}
	r.started, p.running, p.next, p.idle = true, true, nil, make(chan struct{})
	p.mu.Unlock()
	r.err = probe()
	close(r.done)
	p.mu.Lock()
	p.running = false
	close(p.idle)
	p.mu.Unlock()
	return r.err
}
