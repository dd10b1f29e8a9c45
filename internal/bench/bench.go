// Package bench measures a dispatch daemon through its unix-socket HTTP API
// with the echo agent, the figures dispatch promises (durable accept
// throughput and latency, send→done latency of one chat, memory per
// session, status with thousands of sessions), and reports them next to
// their targets. It is a measurement, not a test: `dispatch bench` prints
// the table and exits 0 unless asked to --check.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Targets are the promised figures.
const (
	TargetThroughput   = 5000 // accepted messages/s with 8 clients, at least
	TargetAcceptP99    = 20 * time.Millisecond
	TargetDoneP50      = 3 * time.Millisecond
	TargetDoneP99      = 15 * time.Millisecond
	TargetMBPerKSess   = 20.0 // MB of daemon RSS per 1,000 sessions, at most
	TargetStatus       = 250 * time.Millisecond
	TargetStatusAtSess = 5000
)

// Phase names, in the order they run.
const (
	PhaseThroughput = "throughput"
	PhaseLatency    = "latency"
	PhaseSessions   = "sessions"
)

// AllPhases lists every phase.
var AllPhases = []string{PhaseThroughput, PhaseLatency, PhaseSessions, PhaseFeed, PhaseWebhooks}

// Options configure a run. Zero values take the defaults noted.
type Options struct {
	// Socket measures an already running daemon; empty starts one.
	Socket string
	// Executable is the dispatch binary started as `Executable daemon`
	// (default: this program).
	Executable string
	// InProcess runs the daemon inside this process instead of a child.
	InProcess bool
	// CPUProfile, when set, writes a CPU profile of the measured phases
	// (client and, in process, daemon) to this file.
	CPUProfile string
	// MutexProfile and BlockProfile, when set, write the mutex contention
	// and blocking profiles of the measured phases (in process).
	MutexProfile string
	BlockProfile string
	// Trace, when set, writes an execution trace of the measured phases
	// (in process): where each goroutine waited, for how long, on what.
	Trace string
	// StoreDSN, when set, puts the started daemon's store on this
	// PostgreSQL database instead of SQLite in its state dir.
	StoreDSN string
	// Version is reported for an in-process daemon.
	Version string
	// LogLevel overrides the started daemon's log level ("" keeps the
	// default, info).
	LogLevel string
	// Keep leaves the started daemon's state directory in place.
	Keep bool

	Clients  int           // concurrent clients in the throughput phase (8)
	Duration time.Duration // length of the throughput phase (10s)
	Messages int           // if > 0, the throughput phase sends this many instead
	// Chats, if > 0, spreads the throughput phase's messages over this many
	// fresh chats, message k to chat k mod Chats (the Python original's
	// shape is 100 chats × 10 messages); 0 gives each client its own chat.
	Chats    int
	Samples  int           // send→done round trips in the latency phase (1000)
	Poll     time.Duration // poll interval of the latency phase (200µs)
	Sessions int           // sessions created in the sessions phase (5000)
	// StatusRuns is how many times GET /v1/status is timed (5).
	StatusRuns int
	// Phases to run (default AllPhases).
	Phases []string

	// Progress receives one line per step; nil is silent.
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Samples <= 0 {
		o.Samples = 1000
	}
	if o.Poll <= 0 {
		o.Poll = 200 * time.Microsecond
	}
	if o.Sessions <= 0 {
		o.Sessions = 5000
	}
	if o.StatusRuns <= 0 {
		o.StatusRuns = 5
	}
	if len(o.Phases) == 0 {
		o.Phases = AllPhases
	}
	for _, p := range o.Phases {
		if !slices.Contains(AllPhases, p) {
			return fmt.Errorf("unknown phase %q (phases: throughput, latency, sessions, feed, webhooks)", p)
		}
	}
	if o.Socket != "" && o.InProcess {
		return errors.New("--socket and --in-process exclude each other")
	}
	if o.Socket != "" && o.CPUProfile != "" {
		return errors.New("--cpuprofile profiles an in-process daemon; it cannot profile one behind --socket")
	}
	if o.Socket != "" && (o.MutexProfile != "" || o.BlockProfile != "") {
		return errors.New("--mutexprofile and --blockprofile profile an in-process daemon; they cannot profile one behind --socket")
	}
	if o.Socket != "" && o.StoreDSN != "" {
		return errors.New("--store-dsn configures a daemon the bench starts; with --socket the running daemon's config decides")
	}
	if o.Socket != "" && o.Trace != "" {
		return errors.New("--trace traces an in-process daemon; it cannot trace one behind --socket")
	}
	if o.CPUProfile != "" || o.MutexProfile != "" || o.BlockProfile != "" || o.Trace != "" {
		o.InProcess = true
	}
	if o.Socket == "" && !o.InProcess && o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the dispatch executable: %w", err)
		}
		o.Executable = exe
	}
	return nil
}

// Report is everything a run measured.
type Report struct {
	Started time.Time `json:"started"`
	// Mode is how the daemon ran: child, in-process or socket.
	Mode          string `json:"mode"`
	Socket        string `json:"socket"`
	DaemonPID     int    `json:"daemon_pid"`
	DaemonVersion string `json:"daemon_version"`
	Clients       int    `json:"clients"`

	Machine    Machine           `json:"machine"`
	Throughput *ThroughputResult `json:"throughput,omitempty"`
	Latency    *LatencyResult    `json:"latency,omitempty"`
	Sessions   *SessionsResult   `json:"sessions,omitempty"`
	Feed       *FeedResult       `json:"feed,omitempty"`
	Webhooks   *WebhookResult    `json:"webhooks,omitempty"`
	Figures    []Figure          `json:"figures"`
	// Warnings are problems that do not invalidate the figures.
	Warnings []string `json:"warnings,omitempty"`
}

// Figure is one measured figure against its target.
type Figure struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Op       string  `json:"op"` // ">=" or "<="
	Target   float64 `json:"target"`
	Measured bool    `json:"measured"` // false when its phase was skipped or could not measure it
	Pass     bool    `json:"pass"`
}

// Passed reports whether every measured figure met its target.
func (r *Report) Passed() bool {
	for _, f := range r.Figures {
		if f.Measured && !f.Pass {
			return false
		}
	}
	return true
}

// ThroughputResult is the durable accept phase.
type ThroughputResult struct {
	Clients  int           `json:"clients"`
	Accepted int           `json:"accepted"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	PerSec   float64       `json:"per_sec"`
	Latency  Dist          `json:"latency"`
	// AllDone is the time from the phase's start until every accepted
	// message was done (the sessions keep up, or not).
	AllDone    time.Duration `json:"all_done_ns"`
	DonePerSec float64       `json:"done_per_sec"`
	// Chats is how many chats the messages went to.
	Chats int `json:"chats"`
	// Turns is how many agent turns answered them (the daemon's
	// dispatch_turn_duration_seconds_count, over the phase; -1 when its
	// /metrics does not say), and TurnsPerSec those turns over AllDone.
	Turns       int     `json:"turns"`
	TurnsPerSec float64 `json:"turns_per_sec"`
	// CPU is measured over the accepting part of the phase, CPUAll from
	// its start until every message was done: the daemon's CPU time per
	// message answered, which a loaded machine changes far less than it
	// changes the rates.
	CPU    CPUUse `json:"cpu"`
	CPUAll CPUUse `json:"cpu_all"`
}

// LatencyResult is the one-chat send→done phase.
type LatencyResult struct {
	Samples int           `json:"samples"`
	Poll    time.Duration `json:"poll_ns"`
	Done    Dist          `json:"send_to_done"`
	Accept  Dist          `json:"accept"`
	Polls   float64       `json:"polls_per_message"`
	CPU     CPUUse        `json:"cpu"`
}

// SessionsResult is the many-sessions phase.
type SessionsResult struct {
	Created      int           `json:"created"`
	CreateTime   time.Duration `json:"create_ns"`
	AllDone      time.Duration `json:"all_done_ns"`
	RSSBeforeKB  int64         `json:"rss_before_kb"`
	RSSAfterKB   int64         `json:"rss_after_kb"`
	MBPerK       float64       `json:"mb_per_1000_sessions"`
	HeapDeltaMB  float64       `json:"heap_inuse_delta_mb"`
	GoroutinesD  float64       `json:"goroutines_delta"`
	StatusSess   int           `json:"status_sessions"`
	StatusBytes  int           `json:"status_bytes"`
	Status       Dist          `json:"status"`
	RSSAvailable bool          `json:"rss_available"`
	// CPU is measured from the first message until all were done.
	CPU CPUUse `json:"cpu"`
}

// Run starts (or connects to) the daemon, runs the phases and returns the
// report. An error means the bench itself broke, not that a target was
// missed.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	r := &runner{o: o, run: strconv.FormatInt(time.Now().UnixNano()%(1<<30), 36)}
	// The webhook phase needs an endpoint in the daemon's config: a
	// loopback receiver that holds every request until the phase.
	var hook *hookReceiver
	extra := ""
	if o.StoreDSN != "" {
		extra = fmt.Sprintf("store:\n  driver: postgres\n  dsn: %q\n", o.StoreDSN)
	}
	if slices.Contains(o.Phases, PhaseWebhooks) && o.Socket == "" {
		if hook, err = startReceiver(); err != nil {
			return nil, err
		}
		defer hook.close()
		extra += hook.webhookConfig()
	}
	r.progress("starting the daemon")
	switch {
	case o.Socket != "":
		r.t, err = useSocket(ctx, o.Socket)
	case o.InProcess:
		r.t, err = startInProcess(ctx, o.Version, o.LogLevel, extra, o.Keep)
	default:
		r.t, err = startChild(ctx, o.Executable, o.LogLevel, extra, o.Keep)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		r.progress("stopping the daemon")
		if serr := r.t.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop daemon: %w", serr)
		}
	}()
	r.c = newCtl(r.t.socket, 2)
	defer r.c.close()
	r.conns = make([]*conn, o.Clients)
	for i := range r.conns {
		r.conns[i] = newConn(r.t.socket)
	}
	defer func() {
		for _, c := range r.conns {
			c.close()
		}
	}()

	rep = &Report{Started: time.Now(), Mode: r.t.mode, Socket: r.t.socket, Clients: o.Clients}
	st, _, err := r.c.status(ctx)
	if err != nil {
		return nil, err
	}
	rep.DaemonPID, rep.DaemonVersion = st.Daemon.PID, st.Daemon.Version
	if r.t.pid == 0 {
		r.t.pid = st.Daemon.PID
	}

	r.progress("machine facts and fsync latency in " + r.t.stateDir)
	rep.Machine, err = machineFacts(r.t.stateDir, 200)
	if err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}

	for _, rec := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{o.CPUProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {o.Trace, trace.Start, trace.Stop}} {
		if rec.path == "" {
			continue
		}
		stop, err := record(rec.path, rec.start, rec.stop)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	if o.MutexProfile != "" {
		prev := runtime.SetMutexProfileFraction(10)
		defer runtime.SetMutexProfileFraction(prev)
		defer writeProfile("mutex", o.MutexProfile, &err)
	}
	if o.BlockProfile != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		defer runtime.SetBlockProfileRate(0)
		defer writeProfile("block", o.BlockProfile, &err)
	}

	has := func(p string) bool { return slices.Contains(o.Phases, p) }
	if has(PhaseThroughput) {
		if rep.Throughput, err = r.throughput(ctx); err != nil {
			return nil, fmt.Errorf("throughput phase: %w", err)
		}
	}
	if has(PhaseLatency) {
		if rep.Latency, err = r.latency(ctx); err != nil {
			return nil, fmt.Errorf("latency phase: %w", err)
		}
	}
	if has(PhaseSessions) {
		if rep.Sessions, err = r.sessions(ctx); err != nil {
			return nil, fmt.Errorf("sessions phase: %w", err)
		}
		if !rep.Sessions.RSSAvailable {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("cannot read /proc/%d/status: memory per session not measured", r.t.pid))
		}
		if o.Sessions != TargetStatusAtSess {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the status target is for %d sessions; this run created %d", TargetStatusAtSess, o.Sessions))
		}
	}
	if has(PhaseFeed) {
		if rep.Feed, err = r.feed(ctx); err != nil {
			return nil, fmt.Errorf("feed phase: %w", err)
		}
	}
	if has(PhaseWebhooks) {
		if hook == nil {
			rep.Warnings = append(rep.Warnings, "the webhooks phase needs a daemon the bench starts itself; skipped with --socket")
		} else if rep.Webhooks, err = r.webhooks(ctx, hook); err != nil {
			return nil, fmt.Errorf("webhooks phase: %w", err)
		}
	}
	if r.t.mode == "in-process" {
		rep.Warnings = append(rep.Warnings, "in-process daemon: RSS and CPU include the bench's own client")
	}
	rep.Figures = figures(rep)
	return rep, nil
}

type runner struct {
	o     Options
	t     *target
	c     *ctl    // for the calls that are not measured
	conns []*conn // one per client, for the measured calls
	run   string  // distinguishes this run's chat ids from earlier runs'
}

func (r *runner) progress(format string, a ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "bench: "+format+"\n", a...)
	}
}

// throughput runs o.Clients concurrent clients, each accepting messages to
// its own chat as fast as the daemon answers, for o.Duration (or until
// o.Messages are sent). Every accept is durable before its answer.
func (r *runner) throughput(ctx context.Context) (*ThroughputResult, error) {
	o := r.o
	n := o.Clients
	chats := make([]string, n)
	for i := range chats {
		chats[i] = fmt.Sprintf("tp-%s-%d", r.run, i)
	}
	// The measured chats: the warm-up's, one per client, or o.Chats fresh
	// ones that message k goes to in turn.
	measured := chats
	if o.Chats > 0 {
		measured = make([]string, o.Chats)
		for i := range measured {
			measured[i] = fmt.Sprintf("tpc-%s-%d", r.run, i)
		}
	}
	// Warm up: create the sessions and the connections.
	r.progress("throughput: warming up %d clients", n)
	if err := r.parallel(ctx, n, func(c *conn, i int) error {
		for range 20 {
			if _, err := c.send(ctx, chats[i], "warm-up"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := r.drain(ctx, time.Minute); err != nil {
		return nil, err
	}

	if o.Messages > 0 {
		r.progress("throughput: %d clients, %d messages", n, o.Messages)
	} else {
		r.progress("throughput: %d clients for %s", n, o.Duration)
	}
	turns0, turnsOK := r.c.metricSum(ctx, "dispatch_turn_duration_seconds_count")
	var (
		sent    atomic.Int64
		next    atomic.Int64
		errs    atomic.Int64
		firstMu sync.Mutex
		first   error
	)
	lats := make([][]time.Duration, n)
	ends := make([]time.Time, n)
	cpu0 := sampleCPU(r.t.pid)
	start := time.Now()
	deadline := start.Add(o.Duration)
	var wg sync.WaitGroup
	for i := range n {
		c := r.conns[i]
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			text := "bench message from client " + strconv.Itoa(i)
			for ctx.Err() == nil {
				if o.Messages > 0 {
					if sent.Add(1) > int64(o.Messages) {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				chat := chats[i]
				if o.Chats > 0 {
					chat = measured[(next.Add(1)-1)%int64(len(measured))]
				}
				t0 := time.Now()
				_, err := c.send(ctx, chat, text)
				d := time.Since(t0)
				if err != nil {
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					if errs.Add(1) > 100 {
						break
					}
					continue
				}
				lat = append(lat, d)
			}
			lats[i], ends[i] = lat, time.Now()
		})
	}
	wg.Wait()
	cpu1 := sampleCPU(r.t.pid)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	end := start
	var all []time.Duration
	for i := range n {
		if ends[i].After(end) {
			end = ends[i]
		}
		all = append(all, lats[i]...)
	}
	res := &ThroughputResult{Clients: n, Chats: len(measured), Accepted: len(all), Errors: int(errs.Load()), Elapsed: end.Sub(start), Turns: -1}
	if res.Accepted == 0 {
		return nil, fmt.Errorf("no message accepted: %v", first)
	}
	if res.Errors > 100 {
		return nil, fmt.Errorf("%d failed accepts, first: %v", res.Errors, first)
	}
	res.PerSec = float64(res.Accepted) / res.Elapsed.Seconds()
	res.Latency = summarize(all)
	res.CPU = cpuUse(cpu0, cpu1, r.t.mode == "in-process", res.Accepted)
	r.progress("throughput: %d accepted in %.2fs; waiting until all are done", res.Accepted, res.Elapsed.Seconds())
	if err := r.drain(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	res.AllDone = time.Since(start)
	res.CPUAll = cpuUse(cpu0, sampleCPU(r.t.pid), r.t.mode == "in-process", res.Accepted)
	res.DonePerSec = float64(res.Accepted) / res.AllDone.Seconds()
	if turns1, ok := r.c.metricSum(ctx, "dispatch_turn_duration_seconds_count"); ok && turnsOK {
		res.Turns = int(turns1 - turns0)
		res.TurnsPerSec = float64(res.Turns) / res.AllDone.Seconds()
	}
	return res, nil
}

// latency sends o.Samples messages to one chat one after another, each
// timed from just before its POST until a poll of GET /v1/messages/{id}
// sees it done.
func (r *runner) latency(ctx context.Context) (*LatencyResult, error) {
	o := r.o
	chat := "lat-" + r.run
	c := r.conns[0]
	one := func() (total, accept time.Duration, polls int, err error) {
		t0 := time.Now()
		id, err := c.send(ctx, chat, "ping")
		if err != nil {
			return 0, 0, 0, err
		}
		accept = time.Since(t0)
		for {
			polls++
			st, err := c.state(ctx, id)
			if err != nil {
				return 0, 0, 0, err
			}
			if st == "done" {
				return time.Since(t0), accept, polls, nil
			}
			if time.Since(t0) > 30*time.Second {
				return 0, 0, 0, fmt.Errorf("message %s not done after 30s (state %s)", id, st)
			}
			time.Sleep(o.Poll)
		}
	}
	r.progress("latency: warming up chat %s", chat)
	for range 20 {
		if _, _, _, err := one(); err != nil {
			return nil, err
		}
	}
	r.progress("latency: %d send→done round trips, polling every %s", o.Samples, o.Poll)
	totals := make([]time.Duration, 0, o.Samples)
	accepts := make([]time.Duration, 0, o.Samples)
	polls := 0
	cpu0 := sampleCPU(r.t.pid)
	for range o.Samples {
		t, a, p, err := one()
		if err != nil {
			return nil, err
		}
		totals, accepts, polls = append(totals, t), append(accepts, a), polls+p
	}
	cpu1 := sampleCPU(r.t.pid)
	return &LatencyResult{
		Samples: o.Samples, Poll: o.Poll,
		Done: summarize(totals), Accept: summarize(accepts),
		Polls: float64(polls) / float64(o.Samples),
		CPU:   cpuUse(cpu0, cpu1, r.t.mode == "in-process", o.Samples),
	}, nil
}

// sessions creates o.Sessions sessions with one message each and measures
// the daemon's RSS growth and the time GET /v1/status takes with them.
func (r *runner) sessions(ctx context.Context) (*SessionsResult, error) {
	o := r.o
	res := &SessionsResult{Created: o.Sessions}
	if err := r.drain(ctx, time.Minute); err != nil {
		return nil, err
	}
	before, _, err := r.c.status(ctx)
	if err != nil {
		return nil, err
	}
	heap0, heapOK0 := r.c.metric(ctx, "go_memstats_heap_inuse_bytes")
	gor0, gorOK0 := r.c.metric(ctx, "go_goroutines")
	time.Sleep(200 * time.Millisecond)
	res.RSSBeforeKB = rssKB(r.t.pid)

	r.progress("sessions: creating %d sessions, one message each, %d at a time", o.Sessions, o.Clients)
	var next atomic.Int64
	cpu0 := sampleCPU(r.t.pid)
	start := time.Now()
	if err := r.parallel(ctx, o.Clients, func(c *conn, _ int) error {
		for {
			i := next.Add(1) - 1
			if i >= int64(o.Sessions) {
				return nil
			}
			if _, err := c.send(ctx, fmt.Sprintf("s-%s-%05d", r.run, i), "hello"); err != nil {
				return err
			}
		}
	}); err != nil {
		return nil, err
	}
	res.CreateTime = time.Since(start)
	r.progress("sessions: %d accepted in %.2fs; waiting until all are done", o.Sessions, res.CreateTime.Seconds())
	if err := r.drain(ctx, 5*time.Minute); err != nil {
		return nil, err
	}
	res.AllDone = time.Since(start)
	res.CPU = cpuUse(cpu0, sampleCPU(r.t.pid), r.t.mode == "in-process", o.Sessions)
	// Let the sessions' last saves land before reading memory.
	time.Sleep(time.Second)
	res.RSSAfterKB = rssKB(r.t.pid)
	res.RSSAvailable = res.RSSBeforeKB > 0 && res.RSSAfterKB > 0
	if res.RSSAvailable {
		res.MBPerK = float64(res.RSSAfterKB-res.RSSBeforeKB) / 1024 / (float64(o.Sessions) / 1000)
	}
	if heap1, ok := r.c.metric(ctx, "go_memstats_heap_inuse_bytes"); ok && heapOK0 {
		res.HeapDeltaMB = (heap1 - heap0) / (1 << 20)
	}
	if gor1, ok := r.c.metric(ctx, "go_goroutines"); ok && gorOK0 {
		res.GoroutinesD = gor1 - gor0
	}

	r.progress("sessions: timing GET /v1/status %d times", o.StatusRuns)
	ds := make([]time.Duration, 0, o.StatusRuns)
	for range o.StatusRuns {
		t0 := time.Now()
		st, size, err := r.c.status(ctx)
		if err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
		res.StatusSess, res.StatusBytes = len(st.Sessions), size
	}
	res.Status = summarize(ds)
	if want := len(before.Sessions) + o.Sessions; res.StatusSess < want {
		return nil, fmt.Errorf("status lists %d sessions, want at least %d", res.StatusSess, want)
	}
	return res, nil
}

// parallel runs f(conn i, i) for i in [0, n) on n goroutines and returns
// the errors.
func (r *runner) parallel(ctx context.Context, n int, f func(c *conn, i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := r.conns[i]
		wg.Go(func() { errs[i] = f(c, i) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// drain waits until no message is pending or in flight.
func (r *runner) drain(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		empty, err := r.c.queueEmpty(ctx)
		if err != nil {
			return err
		}
		if empty {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("messages still pending or in flight after %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// figures lines the measurements up against the targets.
func figures(rep *Report) []Figure {
	atLeast := func(name, unit string, v, target float64, ok bool) Figure {
		return Figure{Name: name, Value: v, Unit: unit, Op: ">=", Target: target, Measured: ok, Pass: ok && v >= target}
	}
	atMost := func(name, unit string, v, target float64, ok bool) Figure {
		return Figure{Name: name, Value: v, Unit: unit, Op: "<=", Target: target, Measured: ok, Pass: ok && v <= target}
	}
	var (
		tp  ThroughputResult
		lat LatencyResult
		ses SessionsResult
	)
	if rep.Throughput != nil {
		tp = *rep.Throughput
	}
	if rep.Latency != nil {
		lat = *rep.Latency
	}
	if rep.Sessions != nil {
		ses = *rep.Sessions
	}
	var (
		fd FeedResult
		wh WebhookResult
	)
	if rep.Feed != nil {
		fd = *rep.Feed
	}
	if rep.Webhooks != nil {
		wh = *rep.Webhooks
	}
	return []Figure{
		atLeast(fmt.Sprintf("durable accept throughput, %d clients", rep.Clients), "msg/s",
			tp.PerSec, TargetThroughput, rep.Throughput != nil),
		atMost("accept latency p99, same load", "ms",
			ms(tp.Latency.P99), ms(TargetAcceptP99), rep.Throughput != nil),
		atMost("one chat, send → done p50", "ms",
			ms(lat.Done.P50), ms(TargetDoneP50), rep.Latency != nil),
		atMost("one chat, send → done p99", "ms",
			ms(lat.Done.P99), ms(TargetDoneP99), rep.Latency != nil),
		atMost("daemon memory (RSS) per 1,000 sessions", "MB",
			ses.MBPerK, TargetMBPerKSess, rep.Sessions != nil && ses.RSSAvailable),
		atMost(fmt.Sprintf("GET /v1/status with %s sessions (max of %d)", thousands(float64(ses.StatusSess)), ses.Status.N), "ms",
			ms(ses.Status.Max), ms(TargetStatus), rep.Sessions != nil),
		atMost("reply visible on a waiting long poll after its turn, p50", "ms",
			ms(fd.Visible.P50), ms(TargetFeedP99), rep.Feed != nil),
		atMost("reply visible on a waiting long poll after its turn, p99", "ms",
			ms(fd.Visible.P99), ms(TargetFeedP99), rep.Feed != nil),
		atLeast("webhook deliveries to a loopback receiver", "/s",
			wh.PerSec, TargetWebhookRPS, rep.Webhooks != nil),
	}
}

// record starts a recording (a CPU profile, an execution trace) into a
// new file at path; the function it returns stops it and closes the file.
func record(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { stop(); f.Close() }, nil
}

// writeProfile writes the named runtime profile to path, keeping the first
// error in *err.
func writeProfile(name, path string, err *error) {
	f, ferr := os.Create(path)
	if ferr == nil {
		ferr = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); ferr == nil {
			ferr = cerr
		}
	}
	if ferr != nil && *err == nil {
		*err = fmt.Errorf("%s profile: %w", name, ferr)
	}
}
