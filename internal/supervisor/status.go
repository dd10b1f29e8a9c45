// Status and metrics views: GET /v1/status (Status), the figures
// Prometheus reads at scrape time (metrics.Source) and ChatHold.

package supervisor

import (
	"context"
	"os"
	"sort"
	"time"

	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/webhook"
)

// Status is the object of `dispatch status --json` and GET /v1/status.
type Status struct {
	Daemon   DaemonStatus    `json:"daemon"`
	Sessions []SessionStatus `json:"sessions"`
	Queue    QueueStatus     `json:"queue"`
	// Webhooks are the webhook endpoints with their delivery state (the
	// daemon fills it in; never a secret).
	Webhooks []webhook.EndpointStatus `json:"webhooks,omitempty"`
}

type DaemonStatus struct {
	PID           int     `json:"pid"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	API           string  `json:"api"`
	APIHeld       int     `json:"api_held"`
	Outages       int     `json:"api_outages"`
	OutageSeconds float64 `json:"api_outage_seconds"`
	Healthy       bool    `json:"healthy"`
	// ResourceError is the daemon's own resource error (out of file
	// descriptors, memory or processes) of the last minute: not any
	// session's fault, and retried.
	ResourceError string `json:"resource_error,omitempty"`
	// StoreLost says the database file was removed, replaced or truncated
	// under the daemon: nothing is accepted until it is restarted.
	StoreLost string `json:"store_lost,omitempty"`
}

type SessionStatus struct {
	ChatID       string  `json:"chat_id"`
	State        string  `json:"state"`
	Alive        bool    `json:"alive"`
	Healthy      bool    `json:"healthy"`
	HealthReason string  `json:"health_reason"`
	Busy         bool    `json:"busy"`
	ErrorCount   int     `json:"error_count"`
	IdleSeconds  float64 `json:"idle_seconds"`
	QueueDepth   int     `json:"queue_depth"`
	Turns        int64   `json:"turns"`
	Restarts     int64   `json:"restarts"`
	SessionID    string  `json:"session_id"`
	Exempt       bool    `json:"exempt"`
	ExemptFlag   bool    `json:"exempt_flag"`
	Pid          int     `json:"pid,omitempty"`
	LastActivity string  `json:"last_activity"`
	// StopReason says why a stopped session has no agent: idle, killed,
	// hibernated.
	StopReason string `json:"stop_reason,omitempty"`
	// RSSBytes is a live agent's resident memory, its whole process group
	// counted, read when status is asked.
	RSSBytes uint64 `json:"rss_bytes,omitempty"`
	// StoreError is the store write the session is retrying, while it
	// fails (a full disk, an I/O error).
	StoreError string `json:"store_error,omitempty"`
}

type QueueStatus struct {
	Pending  int `json:"pending"`
	Inflight int `json:"inflight"`
	Dead     int `json:"dead"`
	Done     int `json:"done"`
}

// Status computes the daemon's status now; every verdict is fresh.
func (s *Supervisor) Status(ctx context.Context) (Status, error) {
	now := s.clock.Now()
	// With the database lost under it, reads may fail too: the status then
	// still says so, without queue figures.
	lost := s.storeIntact() != nil && s.storeLost.Load() != nil
	queues, err := s.queues(ctx)
	if err != nil && !lost {
		return Status{}, err
	}
	counts, err := s.store.Counts(ctx)
	if err != nil && !lost {
		return Status{}, err
	}
	bs := s.breaker.Stats()
	api := "up"
	if !bs.Up {
		api = "down"
	}
	st := Status{
		Daemon: DaemonStatus{
			PID: os.Getpid(), Version: s.cfg.Version, UptimeSeconds: now.Sub(s.started).Seconds(),
			API: api, APIHeld: bs.Held, Outages: bs.Outages, OutageSeconds: bs.DownSeconds,
			Healthy: s.Healthy() && s.daemonError() == "" && s.storeLost.Load() == nil, ResourceError: s.daemonError(),
		},
		Queue:    QueueStatus{Pending: counts.Pending, Inflight: counts.Inflight, Dead: counts.Dead, Done: counts.Done},
		Sessions: []SessionStatus{},
	}
	rules := s.cfg.Rules
	snaps := make([]session.Snapshot, 0, len(st.Sessions))
	pids := map[int]bool{}
	for _, ss := range s.all() {
		snap := ss.Snapshot()
		snaps = append(snaps, snap)
		if snap.Pid > 0 && snap.ProcUp {
			pids[snap.Pid] = true
		}
	}
	rss := agentRSS(pids)
	for _, snap := range snaps {
		q := queues[snap.ChatID]
		v := rules.Verdict(snap, q, now, !bs.Up)
		st.Sessions = append(st.Sessions, SessionStatus{
			ChatID:       snap.ChatID,
			State:        string(snap.State),
			Alive:        rules.Alive(snap),
			Healthy:      v.Healthy,
			HealthReason: v.Reason,
			Busy:         snap.Busy,
			ErrorCount:   snap.ErrorCount,
			IdleSeconds:  now.Sub(snap.LastActivity).Seconds(),
			QueueDepth:   q.Depth,
			Turns:        snap.Turns,
			Restarts:     snap.Restarts,
			SessionID:    snap.SessionID,
			Exempt:       rules.Exempt(snap.ChatID, snap.ExemptFlag),
			ExemptFlag:   snap.ExemptFlag,
			Pid:          snap.Pid,
			LastActivity: snap.LastActivity.UTC().Format(time.RFC3339),
			StopReason:   stopReason(snap),
			StoreError:   snap.StoreError,
			RSSBytes:     rss[snap.Pid],
		})
	}
	if e := s.storeLost.Load(); e != nil {
		st.Daemon.StoreLost = (*e).Error()
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].ChatID < st.Sessions[j].ChatID })
	return st, nil
}

func (s *Supervisor) SessionStates() map[string]int {
	out := map[string]int{}
	for _, ss := range s.all() {
		out[string(ss.Snapshot().State)]++
	}
	return out
}

func (s *Supervisor) LiveProcesses() int {
	n := 0
	for _, ss := range s.all() {
		if ss.Snapshot().ProcUp {
			n++
		}
	}
	return n
}

func (s *Supervisor) MessageStates() map[string]int {
	c, err := s.store.Counts(context.Background())
	if err != nil {
		return nil
	}
	return map[string]int{"pending": c.Pending, "inflight": c.Inflight, "done": c.Done, "dead": c.Dead}
}

func (s *Supervisor) APIUp() bool { return s.breaker.Up() }

func (s *Supervisor) OutageSeconds() float64 { return s.breaker.Stats().DownSeconds }

func stopReason(snap session.Snapshot) string {
	if snap.State != session.Stopped {
		return ""
	}
	return string(snap.StopReason)
}

// ChatHold says whether chat's waiting messages are held with no automatic
// way forward: its session failed (an operator restart is needed). It is
// how a sender waiting for a reply learns that none is coming.
func (s *Supervisor) ChatHold(chat string) (held bool, reason string) {
	ss, ok := s.lookup(chat)
	if !ok {
		return false, ""
	}
	snap := ss.Snapshot()
	if snap.State == session.Failed {
		return true, "session failed: " + snap.FailReason
	}
	return false, ""
}
