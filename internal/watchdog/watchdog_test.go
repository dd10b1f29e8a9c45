package watchdog

import (
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig runs Run on a fake clock, fed through a pipe; kills are reported on
// a channel.
type rig struct {
	t     *testing.T
	clk   *clock.Fake
	epoch time.Time
	in    *io.PipeWriter
	kills chan int
	done  chan struct{}
}

func newRig(t *testing.T) *rig {
	epoch := time.Unix(1_000_000, 0)
	r := &rig{t: t, clk: clock.NewFake(epoch), epoch: epoch, kills: make(chan int, 16), done: make(chan struct{})}
	pr, pw := io.Pipe()
	r.in = pw
	go func() {
		defer close(r.done)
		Run(pr, Config{
			Clock: r.clk,
			Mono:  func() time.Duration { return r.clk.Now().Sub(epoch) },
			Kill:  func(pgid int) error { r.kills <- pgid; return nil },
		})
	}()
	t.Cleanup(func() { pw.Close(); <-r.done })
	return r
}

func (r *rig) send(format string, args ...any) {
	r.t.Helper()
	if _, err := fmt.Fprintf(r.in, format+"\n", args...); err != nil {
		r.t.Fatal(err)
	}
}

// deadline sends a deadline d from now.
func (r *rig) deadline(d time.Duration) { r.send("d %d", int64(r.clk.Now().Add(d).Sub(r.epoch))) }

// armed waits until the watchdog's timer is set for d from now (a fake
// clock timer: the state the code offers).
func (r *rig) armed(d time.Duration) {
	r.t.Helper()
	want := r.clk.Now().Add(d)
	for bound := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if when, ok := r.clk.Next(); ok && when.Equal(want) && r.clk.Pending() == 1 {
			return
		}
		if time.Now().After(bound) {
			r.t.Fatalf("the watchdog never armed its deadline %s from now", d)
		}
	}
}

func (r *rig) wantKill(pgid int) {
	r.t.Helper()
	select {
	case got := <-r.kills:
		if got != pgid {
			r.t.Fatalf("killed %d, want %d", got, pgid)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatalf("%d not killed", pgid)
	}
}

func (r *rig) wantNoKill() {
	r.t.Helper()
	select {
	case got := <-r.kills:
		r.t.Fatalf("killed %d", got)
	default:
	}
}

// A watched group is killed exactly when the deadline passes unrenewed;
// a renewal moves it on; a group watched after the deadline passed is
// killed at once.
func TestKilledAtTheDeadline(t *testing.T) {
	r := newRig(t)
	r.deadline(time.Second)
	r.send("w 100")
	r.armed(time.Second)
	r.clk.Advance(999 * time.Millisecond)
	r.deadline(time.Second) // renewed: now +1s
	r.armed(time.Second)
	r.clk.Advance(999 * time.Millisecond)
	r.wantNoKill()
	r.clk.Advance(time.Millisecond)
	r.wantKill(100)
	r.send("w 102")
	r.wantKill(102)
	r.deadline(time.Second)
	r.send("w 103")
	r.armed(time.Second)
	r.wantNoKill()
}

// Before the first deadline nothing is killed; a released group is never
// killed; at EOF (the daemon is gone) every watched group is.
func TestEOFKillsWhatIsWatched(t *testing.T) {
	r := newRig(t)
	r.send("w 200")
	r.send("w 201")
	r.send("u 201")
	r.clk.Advance(time.Hour)
	r.in.Close()
	<-r.done
	r.wantKill(200)
	r.wantNoKill()
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"", "w", "w x", "x 5", "w 1", "w -3", "ww 5", "d 1 2"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
	if c, err := parse("d 123"); err != nil || c != (command{opDeadline, 123}) {
		t.Errorf("parse(d 123) = %+v, %v", c, err)
	}
}
