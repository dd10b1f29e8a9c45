// Package metrics defines dispatch's Prometheus metrics. Everything lives in
// its own registry (no globals), and gauges that describe current state are
// read at scrape time from a Source, so they can never drift.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dispatchd/dispatch/internal/lifecycle"
)

// Source reports current state at scrape time.
type Source interface {
	SessionStates() map[string]int // sessions by state
	LiveProcesses() int
	MessageStates() map[string]int // messages by state
	APIUp() bool
	OutageSeconds() float64
	// AgentRSS is the resident memory of the live agents at the last
	// sample (each agent's whole process group): the sum and the largest.
	AgentRSS() (sum, max uint64)
	// SessionsWaiting is how many sessions wait for a live slot.
	SessionsWaiting() int
}

// Metrics holds the counters and histograms that events update.
type Metrics struct {
	Registry      *prometheus.Registry
	Restarts      *prometheus.CounterVec
	Checks        prometheus.Counter
	CheckDuration prometheus.Histogram
	Reaped        prometheus.Counter
	Accepted      prometheus.Counter
	Duplicates    prometheus.Counter
	Done          prometheus.Counter
	TurnDuration  *prometheus.HistogramVec
	DeadLetters   prometheus.Counter
	Panics        prometheus.Counter
	Lifecycle     *prometheus.CounterVec
	Orphans       prometheus.Counter
	Stranded      prometheus.Counter
	Hibernations  prometheus.Counter
}

// New creates the metrics and registers them, with src's state gauges.
func New(src Source) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatch_restarts_total", Help: "Automatic session restarts by reason.",
		}, []string{"reason"}),
		Checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_health_checks_total", Help: "Health checks run.",
		}),
		CheckDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dispatch_health_check_duration_seconds", Help: "Duration of one health check.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		Reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_sessions_reaped_total", Help: "Sessions stopped for being idle.",
		}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_messages_accepted_total", Help: "Messages durably accepted.",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_messages_duplicate_total", Help: "Sends answered as duplicates of a stored client id.",
		}),
		Done: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_messages_done_total", Help: "Messages answered.",
		}),
		TurnDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dispatch_turn_duration_seconds", Help: "Duration of agent turns by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"outcome"}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_dead_letters_total", Help: "Messages moved to the dead state.",
		}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_panics_total", Help: "Panics caught in sessions and checks.",
		}),
		Orphans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_orphan_processes_killed_total", Help: "Agent processes no session owned, killed by the health check.",
		}),
		Stranded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_stranded_handovers_total",
			Help: "Times the health check found waiting messages with nothing scheduled to hand them over (always a bug) and handed them over.",
		}),
		Hibernations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatch_hibernations_total",
			Help: "Idle sessions stopped (resumable) to free a live slot for a chat waiting at sessions.max_live.",
		}),
		Lifecycle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatch_lifecycle_events_total", Help: "Session lifecycle events by kind.",
		}, []string{"event"}),
	}
	m.Registry.MustRegister(m.Restarts, m.Checks, m.CheckDuration, m.Reaped, m.Accepted, m.Duplicates,
		m.Done, m.TurnDuration, m.DeadLetters, m.Panics, m.Lifecycle, m.Orphans, m.Stranded, m.Hibernations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{src: src})
	for _, r := range lifecycle.RestartLabels() {
		m.Restarts.WithLabelValues(r) // present (at 0) before the first restart
	}
	return m
}

// ObserveLifecycle counts one lifecycle event: by kind, and restarts by
// the label of their cause (lifecycle.Cause.RestartLabel).
func (m *Metrics) ObserveLifecycle(ev lifecycle.Event) {
	m.Lifecycle.WithLabelValues(ev.Kind.String()).Inc()
	switch ev.Kind {
	case lifecycle.Restart:
		m.Restarts.WithLabelValues(ev.Cause.RestartLabel()).Inc()
	case lifecycle.Reap:
		m.Reaped.Inc()
	case lifecycle.DeadLetter:
		m.DeadLetters.Inc()
	case lifecycle.Panic:
		m.Panics.Inc()
	}
}

// ObserveTurn records one turn.
func (m *Metrics) ObserveTurn(d time.Duration, outcome string) {
	m.TurnDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

var (
	descSessions = prometheus.NewDesc("dispatch_sessions", "Sessions by state.", []string{"state"}, nil)
	descProcs    = prometheus.NewDesc("dispatch_agent_processes", "Live agent processes.", nil, nil)
	descMessages = prometheus.NewDesc("dispatch_messages", "Stored messages by state.", []string{"state"}, nil)
	descAPIUp    = prometheus.NewDesc("dispatch_api_up", "1 while the AI API is considered reachable.", nil, nil)
	descOutage   = prometheus.NewDesc("dispatch_api_outage_seconds_total", "Time the AI API has been down.", nil, nil)
	descRSS      = prometheus.NewDesc("dispatch_agent_rss_bytes",
		"Resident memory of the live agents (each agent's whole process group) at the last sample: stat=sum over all agents, stat=max the largest one.",
		[]string{"stat"}, nil)
	descWaiting = prometheus.NewDesc("dispatch_sessions_waiting", "Sessions waiting for a live slot (sessions.max_live reached).", nil, nil)
)

type stateCollector struct{ src Source }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descProcs, descMessages, descAPIUp, descOutage, descRSS, descWaiting} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	states := c.src.SessionStates()
	for _, s := range []string{"starting", "idle", "busy", "stopped", "failed", "paused", "waiting"} {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(states[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(descProcs, prometheus.GaugeValue, float64(c.src.LiveProcesses()))
	msgs := c.src.MessageStates()
	for _, s := range []string{"pending", "inflight", "done", "dead"} {
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.GaugeValue, float64(msgs[s]), s)
	}
	up := 0.0
	if c.src.APIUp() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descAPIUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descOutage, prometheus.CounterValue, c.src.OutageSeconds())
	sum, mx := c.src.AgentRSS()
	ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(sum), "sum")
	ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(mx), "max")
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(c.src.SessionsWaiting()))
}
