package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/dispatchd/dispatch/internal/store"
)

// The WAL's fsync, off the writer goroutine.
//
// The writer's connection commits with synchronous=NORMAL: a COMMIT
// writes the group's pages to the write-ahead log and returns without an
// fsync. A group that holds a durable write (or an event) is then handed
// to the syncer, which fsyncs the WAL file and only then answers its
// callers and moves the event feed's visible mark; meanwhile the writer
// already runs the next group. One fsync covers every group committed
// before it began, so while it runs the next groups gather behind it, and
// the writer's serial time per group no longer includes the flush (about
// half a millisecond on the disks measured, more than a small group's
// statements).
//
// What this keeps: a caller told that a durable write succeeded has it in
// a WAL that was flushed after its commit — the same guarantee as
// synchronous=FULL, whose COMMIT flushes the same file (SQLite's recovery
// needs nothing more: the WAL header and frames are in that file, and a
// checkpoint flushes the WAL before it copies pages into the database).
// The feed's readers are told of an event only once it is flushed, so no
// reader can be given an event that a power failure takes back. What it
// changes: for the half millisecond between a group's commit and its
// flush, the read pool can see the group's rows (a message that is done,
// its reply), which a power failure (not a crash of the process: the
// pages are in the kernel's cache) would take back; nobody has been told
// the write succeeded yet. A failed fsync is final: the kernel may have
// dropped the pages it could not write, so no later flush can be trusted
// to cover them, and every write from then on fails with the error (the
// daemon reports the store unhealthy; a restart recovers from the WAL).

// synced is a committed group waiting for the WAL's flush.
type synced struct {
	ops       []*writeOp
	errs      []error // each op's own outcome (nil: committed)
	lastEvent int64
}

// syncer flushes the WAL for committed groups and then answers them.
type syncer struct {
	mu    sync.Mutex
	queue []synced
	flush func() error // fsyncs the WAL; tests replace it
	err   error        // sticky: the first failed flush
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

func (y *syncer) init(flush func() error) {
	y.flush = flush
	y.wake = make(chan struct{}, 1)
	y.stop = make(chan struct{})
	y.done = make(chan struct{})
}

// add queues a committed group for the next flush.
func (y *syncer) add(g synced) {
	y.mu.Lock()
	y.queue = append(y.queue, g)
	y.mu.Unlock()
	select {
	case y.wake <- struct{}{}:
	default:
	}
}

// failed is the sticky error of a failed flush (nil: none).
func (y *syncer) failed() error {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.err
}

// run flushes and answers until close, then answers what is left.
func (s *DB) runSyncer() {
	y := &s.sync
	defer close(y.done)
	for {
		select {
		case <-y.wake:
		case <-y.stop:
			s.flushQueued()
			return
		}
		s.flushQueued()
	}
}

// flushQueued flushes the WAL once for every group queued so far, then
// moves the feed's mark and answers their callers, in commit order.
func (s *DB) flushQueued() {
	y := &s.sync
	y.mu.Lock()
	groups := y.queue
	y.queue = nil
	flush, err := y.flush, y.err
	y.mu.Unlock()
	if len(groups) == 0 {
		return
	}
	if err == nil {
		if err = flush(); err != nil {
			err = store.Classify(store.ErrIO, fmt.Errorf("store: flush the write-ahead log: %w", err))
			y.mu.Lock()
			y.err = err
			y.mu.Unlock()
		}
	}
	for _, g := range groups {
		if err == nil {
			// After the flush, before anyone is answered: a reader told
			// of an event can read it, and keeps it.
			s.feed.Advance(g.lastEvent)
		}
		for i, op := range g.ops {
			e := g.errs[i]
			if e == nil {
				e = err
			}
			op.done <- e
		}
	}
}

// closeSyncer answers the groups still queued (after one last flush) and
// stops the syncer; the writer must have stopped.
func (s *DB) closeSyncer() {
	close(s.sync.stop)
	<-s.sync.done
}

// flushWAL fsyncs the database's write-ahead log.
func (s *DB) flushWAL() error {
	f, err := os.Open(s.ident.path + "-wal")
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// syncDir fsyncs the directory holding path, so that a file created in it
// (the WAL) is found after a power failure.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
