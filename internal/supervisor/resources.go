package supervisor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dispatchd/dispatch/internal/lifecycle"
	"github.com/dispatchd/dispatch/internal/resources"
)

// MarkerVar is the environment variable every agent gets (Config.Env holds
// it), set to a random value of this state dir's; it is inherited by the
// agent's children, so the daemon can find every process it is responsible
// for. Random, so that nobody sets it by accident or guesses it.
const MarkerVar = "DISPATCH_AGENT_MARK"

// resourceWatch carries what the resource checks remember between checks.
type resourceWatch struct {
	diskLevel   string
	diskLogged  time.Time
	fdWarned    time.Time
	suspects    map[int]bool // marked processes no session owned at the last check
	orphansKill int
}

// checkResources is the resource part of a health check: disk, file
// descriptors, and orphaned agent processes. It is skipped without a state
// dir (unit tests of the session rules).
func (s *Supervisor) checkResources(now time.Time) {
	if s.cfg.StateDir == "" {
		return
	}
	w := &s.res
	if d, err := resources.DiskUsage(s.cfg.StateDir); err != nil {
		s.log.Error("disk check", "err", err)
	} else {
		level := resources.DiskLevel(d.UsedPercent)
		// Log on every change of level, and again hourly while not ok.
		if level != w.diskLevel || (level != "ok" && now.Sub(w.diskLogged) >= time.Hour) {
			attrs := []any{"used_percent", fmt.Sprintf("%.1f", d.UsedPercent), "free_bytes", d.FreeBytes, "state_dir", s.cfg.StateDir}
			switch level {
			case "critical":
				s.log.Error("disk almost full", attrs...)
			case "warn":
				s.log.Warn("disk filling up", attrs...)
			default:
				if w.diskLevel != "" {
					s.log.Info("disk usage back to normal", attrs...)
				}
			}
			w.diskLevel, w.diskLogged = level, now
		}
	}
	if open, limit, err := resources.OpenFDs(); err == nil && limit > 0 && uint64(open)*100 >= limit*80 && now.Sub(w.fdWarned) >= time.Hour {
		w.fdWarned = now
		s.log.Warn("open file descriptors near the limit", "open", open, "limit", limit)
	}
	s.killOrphans(false)
}

// orphanMinAge is how long a marked process must have run before a check
// may call it an orphan: an agent being started is in no snapshot yet.
const orphanMinAge = 30 * time.Second

// killOrphans kills agent processes (and their children) that carry this
// daemon's marker but belong to no live session. During a check a process
// must be seen orphaned twice in a row — an agent that is just starting is
// not yet in any snapshot. At startup (all=true) nothing is live yet, so
// every marked process is a leftover of an earlier daemon.
func (s *Supervisor) killOrphans(all bool) {
	mark := s.cfg.Env[MarkerVar]
	if mark == "" {
		return
	}
	table, err := resources.ReadTable("", MarkerVar, mark, os.Geteuid())
	if err != nil {
		s.log.Error("orphan check", "err", err)
		return
	}
	owned := map[int]bool{}
	if pid := s.probePid.Load(); pid > 0 {
		owned[int(pid)] = true
	}
	if !all {
		for _, ss := range s.all() {
			if snap := ss.Snapshot(); snap.Pid > 0 {
				owned[snap.Pid] = true
			}
		}
	}
	minAge := time.Duration(0)
	if !all {
		minAge = orphanMinAge
	}
	next := map[int]bool{}
	for _, p := range resources.Orphans(table, owned, minAge) {
		if !all && !s.res.suspects[p.PID] {
			next[p.PID] = true
			continue
		}
		if err := resources.Kill("", p); err != nil {
			if !errors.Is(err, resources.ErrChanged) {
				s.log.Warn("could not kill an agent process no session owns", "pid", p.PID, "err", err)
			}
			continue
		}
		// Its group's other members of ours (a child that cleared its
		// environment) go with it.
		if p.PGID == p.PID {
			for _, q := range table.Procs {
				if q.PGID == p.PID && q.PID != p.PID && q.UID == p.UID && q.EUID == p.EUID {
					_ = resources.Kill("", q)
				}
			}
		}
		s.res.orphansKill++
		s.metrics.Orphans.Inc()
		s.log.Warn("killed an agent process no session owns", "pid", p.PID, "pgid", p.PGID, "cmd", p.Cmd)
		s.emit(lifecycle.Event{Kind: lifecycle.OrphanKilled, Cause: lifecycle.Orphan, Detail: fmt.Sprintf("pid %d (%s), process group %d", p.PID, p.Cmd, p.PGID)})
	}
	s.res.suspects = next
}
