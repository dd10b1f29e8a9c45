package claude

import (
	"bytes"
	"os"
	"path/filepath"
	"time"
)

// The CLI writes a turn's entries to its transcript (<session id>.jsonl in
// the project folder) as it goes, but the last of them — the assistant
// message that answers — land a few milliseconds after the result line on
// stdout. Each assistant (and user) line on stdout carries the uuid of the
// transcript entry that records it, so a turn's save waits until the
// transcript holds every uuid the turn printed: only then is the
// conversation saved and the turn reported done.
const (
	// transcriptWait bounds that wait; past it the turn is saved as it is
	// (a later save, at the next turn or at the agent's exit, catches up).
	transcriptWait = 5 * time.Second
	// transcriptPoll is how often the transcript is looked at meanwhile.
	transcriptPoll = 10 * time.Millisecond
)

// transcriptHolds reports whether the transcripts (the .jsonl files) of the
// project folder pdir hold an entry for every uuid.
func transcriptHolds(pdir string, uuids []string) bool {
	if len(uuids) == 0 {
		return true
	}
	files, _ := filepath.Glob(filepath.Join(pdir, "*.jsonl"))
	var all [][]byte
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			all = append(all, b)
		}
	}
	for _, u := range uuids {
		key := []byte(`"uuid":"` + u + `"`)
		found := false
		for _, b := range all {
			if bytes.Contains(b, key) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// awaitTranscript waits, on p's clock and at most transcriptWait, until the
// transcripts in pdir hold the entries of every uuid the turn printed, or
// the process ends. false: they did not in time.
func (p *Process) awaitTranscript(pdir string, uuids []string) bool {
	bound := p.clk.NewTimer(transcriptWait)
	defer bound.Stop()
	for {
		if transcriptHolds(pdir, uuids) {
			return true
		}
		t := p.clk.NewTimer(transcriptPoll)
		select {
		case <-t.C():
		case <-bound.C():
			t.Stop()
			return false
		case <-p.done:
			t.Stop()
			return transcriptHolds(pdir, uuids)
		}
	}
}

// noteEntry records the uuid of a stdout line that the transcript records
// too, for the turn in flight.
func (p *Process) noteEntry(uuid string) {
	if uuid == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting != nil {
		p.entries = append(p.entries, uuid)
	}
}
