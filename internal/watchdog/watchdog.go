// Package watchdog stops a cluster node's agents when the node can no
// longer vouch for its leases, even when the daemon itself cannot act: a
// daemon stopped dead (SIGSTOP, a frozen VM) is not there to stop its
// agents, and an agent whose chat another node takes over must not go on
// working beside the new owner's.
//
// The watchdog is a small process of its own (the hidden `dispatch
// agent-watchdog`), started by the daemon with a pipe on its stdin. The
// daemon tells it, one line each, which agent process groups to watch and
// until when its leases hold — a deadline on the machine's monotonic
// clock, earlier than any lease can expire, renewed with every successful
// lease renewal. When the deadline passes without a renewal, the watchdog
// kills every watched group at once (SIGKILL); when the pipe closes (the
// daemon exited or was killed), it kills what is still watched and exits.
//
// The protocol, one command per line:
//
//	w <pgid>   watch the process group pgid (an agent that started)
//	u <pgid>   stop watching it (the agent ended)
//	d <ns>     the leases hold until <ns> on CLOCK_MONOTONIC
package watchdog

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

// Command is the hidden subcommand that runs the watchdog.
const Command = "agent-watchdog"

// Config is what Run needs: the clock its timers run on, the monotonic
// clock the deadlines are given in, and how to kill a group.
type Config struct {
	Clock clock.Clock
	// Mono is the machine's monotonic clock (CLOCK_MONOTONIC), shared by
	// every process on it.
	Mono func() time.Duration
	// Kill kills process group pgid (SIGKILL).
	Kill func(pgid int) error
	Log  *slog.Logger
}

type op byte

const (
	opWatch    op = 'w'
	opUnwatch  op = 'u'
	opDeadline op = 'd'
)

type command struct {
	op  op
	arg int64
}

// parse reads one command line.
func parse(line string) (command, error) {
	f := strings.Fields(line)
	if len(f) != 2 || len(f[0]) != 1 {
		return command{}, fmt.Errorf("watchdog: bad command %q", line)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return command{}, fmt.Errorf("watchdog: bad command %q: %w", line, err)
	}
	c := command{op: op(f[0][0]), arg: n}
	switch c.op {
	case opWatch, opUnwatch:
		if n <= 1 || n > 1<<22 {
			return command{}, fmt.Errorf("watchdog: bad process group %d", n)
		}
	case opDeadline:
	default:
		return command{}, fmt.Errorf("watchdog: unknown command %q", line)
	}
	return c, nil
}

// Run watches until in ends, then kills every group still watched and
// returns. Before the first deadline nothing is killed for lack of one.
func Run(in io.Reader, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cmds := make(chan command, 64)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			c, err := parse(sc.Text())
			if err != nil {
				cfg.Log.Warn("watchdog: command ignored", "err", err)
				continue
			}
			cmds <- c
		}
	}()
	w := &state{cfg: cfg, watched: map[int]bool{}}
	for {
		var fire <-chan time.Time
		var t clock.Timer
		if w.armed() {
			t = cfg.Clock.NewTimer(w.deadline - cfg.Mono())
			fire = t.C()
		}
		select {
		case c, ok := <-cmds:
			if !ok {
				if t != nil {
					t.Stop()
				}
				w.killAll("the daemon is gone")
				return
			}
			w.apply(c)
		case <-fire:
		}
		if t != nil {
			t.Stop()
		}
		if w.has && cfg.Mono() >= w.deadline {
			w.killAll("the daemon did not renew its deadline: its leases may be taken over")
		}
	}
}

// state is what the watchdog knows.
type state struct {
	cfg      Config
	watched  map[int]bool
	deadline time.Duration // on Mono
	has      bool          // a deadline was given
}

// armed: there is something to kill at a deadline still to come.
func (w *state) armed() bool { return w.has && len(w.watched) > 0 }

func (w *state) apply(c command) {
	switch c.op {
	case opWatch:
		w.watched[int(c.arg)] = true
	case opUnwatch:
		delete(w.watched, int(c.arg))
	case opDeadline:
		w.deadline, w.has = time.Duration(c.arg), true
	}
}

func (w *state) killAll(why string) {
	for pgid := range w.watched {
		err := w.cfg.Kill(pgid)
		w.cfg.Log.Warn("watchdog: killed an agent's process group: "+why, "pgid", pgid, "err", err)
		delete(w.watched, pgid)
	}
}
