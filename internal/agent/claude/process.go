package claude

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

const (
	// maxLine bounds one stdout line; longer lines are dropped with a
	// warning rather than exhausting memory. Real lines reach a few MB.
	maxLine = 64 << 20
	// maxErrLine bounds one stderr line.
	maxErrLine = 1 << 20
	// stderrTail is how many stderr lines are kept for error messages.
	stderrTail = 20
	// tailLineLen bounds one kept stderr line.
	tailLineLen = 1 << 10
	// drainTimeout bounds the wait for stdout/stderr EOF once the process
	// group is gone; a grandchild that left the group could otherwise hold
	// the pipes open forever.
	drainTimeout = 2 * time.Second
	// exitSaveTimeout bounds the conversation's save at the process's end.
	exitSaveTimeout = 3 * time.Second
)

// Process is one running Claude Code CLI. It implements agent.Process.
type Process struct {
	spec   agent.Spec
	log    *slog.Logger
	clk    clock.Clock
	grace  time.Duration
	cmd    *exec.Cmd
	pid    int
	stdin  *os.File // our write end
	stdout *os.File // our read end
	stderr *os.File // our read end

	stdinOnce sync.Once
	lastOut   atomic.Int64 // unix nanoseconds
	lastProg  atomic.Int64 // unix nanoseconds of the last line of the agent's own (not system)
	outLines  atomic.Int64 // stdout lines read: a turn was taken if it grew
	outDone   chan struct{}
	errDone   chan struct{}
	done      chan struct{}
	// life ends when the process has exited: open permission requests
	// are then dropped unanswered.
	life        context.Context
	endLife     context.CancelFunc
	permTimeout time.Duration
	wmu         sync.Mutex // one stdin line at a time (turns, control responses)
	// retryAt: unix nanoseconds of the first system/api_retry line since
	// the current turn was written (0: none)
	retryAt atomic.Int64

	mu        sync.Mutex
	sessionID string
	waiting   chan ResultLine // the turn waiting for a result, if any
	// armed: the agent has written a line other than a result since the
	// waiting turn was sent (the CLI starts every turn with system/init),
	// so a result now answers that turn. A result before that is stray.
	armed    bool
	reported string   // the session id of the last init line
	answered bool     // a turn got its result
	unread   int      // bytes of stdin nobody read when the process ended
	skip     int      // results still due to abandoned turns
	broken   error    // set when an abandoned turn left stdin mid-line
	reaped   bool     // no more group signals: the pid may be reused
	stopped  bool     // Stop was called
	tail     []string // last stderr lines
	noConv   string   // a --resume start reported its conversation missing
	exitErr  error
	// entries are the uuids of the turn's assistant and user lines: the
	// transcript entries it must hold before the turn is saved.
	entries []string
	turnCtx context.Context        // the running turn's, nil between turns
	asks    map[string]*pendingAsk // open permission requests by request_id

	// save, when set, saves the conversation kept in the project folder
	// pdir: once a turn got its result and its transcript entries (before
	// the turn returns), and once the process ended.
	save func(timeout time.Duration)
	pdir string
	// unwatch releases the group from the watchdog (watch.go).
	unwatch func()
}

var _ agent.Process = (*Process)(nil)

// start runs cmd with pipes of our own (not cmd.StdoutPipe: with *os.File
// ends, cmd.Wait does not wait for a grandchild that still holds a pipe) and
// starts the reader and waiter goroutines.
func start(cmd *exec.Cmd, spec agent.Spec, cfg Config, pdir string, save func(time.Duration)) (*Process, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return nil, fmt.Errorf("claude: pipes: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("claude: start %s: %w", cmd.Path, err)
	}
	// The child holds its ends now; ours must go, or EOF never comes.
	inR.Close()
	outW.Close()
	errW.Close()

	p := &Process{
		spec:      spec,
		clk:       cfg.Clock,
		grace:     cfg.StopGrace,
		cmd:       cmd,
		pid:       cmd.Process.Pid,
		stdin:     inW,
		stdout:    outR,
		stderr:    errR,
		outDone:   make(chan struct{}),
		errDone:   make(chan struct{}),
		done:      make(chan struct{}),
		sessionID: spec.SessionID,
		pdir:      pdir,
		save:      save,

		permTimeout: cfg.PermissionTimeout,
	}
	if p.permTimeout <= 0 {
		p.permTimeout = DefaultPermissionTimeout
	}
	p.life, p.endLife = context.WithCancel(context.Background())
	p.log = spec.Log.With("agent", "claude", "pid", p.pid)
	p.watchStarted(cfg.Watch)
	p.touch()
	go p.readStdout()
	go p.readStderr()
	go p.wait()
	return p, nil
}

// SessionID is the id given at start, or for a new conversation the one
// the CLI reported in its init line. A resumed id is never replaced.
func (p *Process) SessionID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessionID
}

// Done is closed once the CLI has exited, its group has been killed and
// reaped, and the readers have finished.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is nil when the CLI exited with status 0; otherwise a
// *agent.TurnError of Kind ResumeFailed when the CLI said "No conversation
// found", else of Kind Exited with the exit status and the stderr tail.
// Valid after Done.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// LastOutput is when the CLI last wrote a line (stdout or stderr), or when
// it started.
func (p *Process) LastOutput() time.Time { return time.Unix(0, p.lastOut.Load()) }

// LastProgress is when the CLI last wrote a stdout line of its own: not a
// system line (init, api_retry), which it prints at once even when the API
// then hangs, and not stderr. Zero before any. It implements
// agent.ProgressReporter.
func (p *Process) LastProgress() time.Time {
	if n := p.lastProg.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// FirstRetry is when the CLI first reported retrying a failed API request
// (a system/api_retry line) since the current turn was written, if at or
// after since; zero if it did not. It implements agent.RetryReporter.
func (p *Process) FirstRetry(since time.Time) time.Time {
	n := p.retryAt.Load()
	if n == 0 {
		return time.Time{}
	}
	if t := time.Unix(0, n); !t.Before(since) {
		return t
	}
	return time.Time{}
}

// UnreadInput is how many bytes written to the CLI's stdin it has not read:
// while it runs, what is in the pipe now; once it has ended, what was left
// when it ended. It implements agent.InputReporter.
func (p *Process) UnreadInput() int {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.unread
	default:
	}
	return unreadBytes(p.stdin)
}

// Pid is the CLI's pid, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

func (p *Process) touch() { p.lastOut.Store(p.clk.Now().UnixNano()) }

// Turn writes the texts as one user message (one text block each) and
// waits for the result line, the end of the process, or ctx.
func (p *Process) Turn(ctx context.Context, texts []string) (agent.Result, error) {
	if len(texts) == 0 {
		return agent.Result{}, agent.Errorf(agent.Fault, "claude: empty turn")
	}
	select {
	case <-p.done:
		return agent.Result{}, p.exitDuring(p.outLines.Load(), false)
	default:
	}
	line, err := userLine(texts)
	if err != nil {
		return agent.Result{}, agent.Errorf(agent.Fault, "claude: encode message: %v", err)
	}
	ch := make(chan ResultLine, 1)
	p.mu.Lock()
	if p.broken != nil {
		err := p.broken
		p.mu.Unlock()
		return agent.Result{}, agent.Errorf(agent.Fault, "claude: %v", err)
	}
	p.waiting = ch
	p.armed = false
	p.entries = nil
	p.turnCtx = ctx
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.turnCtx = nil
		p.mu.Unlock()
	}()

	start := p.clk.Now()
	seen := p.outLines.Load()
	p.retryAt.Store(0)
	if n, err := p.write(ctx, line); err != nil {
		p.mu.Lock()
		if p.waiting == ch {
			p.waiting = nil
		}
		if n > 0 && n < len(line) {
			p.broken = errors.New("an abandoned turn left a partial line on stdin; restart the agent")
		}
		p.mu.Unlock()
		if ctx.Err() != nil {
			return agent.Result{}, fmt.Errorf("claude: turn abandoned while writing: %w", ctx.Err())
		}
		// Stdin is closed (Stop, or the drain after the CLI exited),
		// broken (the CLI is gone or closed its input): the turn provably
		// never reached the agent. A process that is ending says how (a
		// failed resume, a clean exit): once the CLI has exited the turn
		// waits for the drain (bounded by drainTimeout), so that the
		// caller learns the process ended rather than taking a clean exit
		// for an agent that will not read.
		t := p.clk.NewTimer(p.grace)
		defer t.Stop()
		timeout := t.C()
		for {
			select {
			case <-p.done:
				return agent.Result{}, p.exitDuring(seen, false)
			case <-ctx.Done():
				return agent.Result{}, fmt.Errorf("claude: turn abandoned: %w", ctx.Err())
			case <-timeout:
				if p.exited() {
					timeout = nil // ended: its drain finishes soon
					continue
				}
				return agent.Result{}, &agent.TurnError{Kind: agent.Undelivered,
					Msg: "the agent does not read its input (it closed it): " + err.Error()}
			}
		}
	}

	select {
	case r := <-ch:
		return p.finish(r, start)
	case <-p.done:
		// Done closes only after stdout is drained, so a result that came
		// before the exit is already in ch.
		select {
		case r := <-ch:
			return p.finish(r, start)
		default:
			return agent.Result{}, p.exitDuring(seen, true)
		}
	case <-ctx.Done():
		p.mu.Lock()
		if p.waiting == ch { // no result yet: the next one is this turn's
			p.waiting = nil
			p.skip++
		}
		p.mu.Unlock()
		return agent.Result{}, fmt.Errorf("claude: turn abandoned: %w", ctx.Err())
	}
}

// finish turns a result line into the turn's outcome.
func (p *Process) finish(r ResultLine, start time.Time) (agent.Result, error) {
	if p.save != nil {
		p.mu.Lock()
		entries := p.entries
		p.mu.Unlock()
		if !p.awaitTranscript(p.pdir, entries) {
			p.log.Warn("the turn's entries did not reach the transcript in time; saving the conversation as it is",
				"wait", transcriptWait, "entries", len(entries))
		}
		p.save(convTimeout)
	}
	if te := Classify(r); te != nil {
		return agent.Result{}, te
	}
	return agent.Result{Text: r.Result, SessionID: p.SessionID(), Duration: p.clk.Now().Sub(start), Denials: r.Denials}, nil
}

// write writes line to stdin, one line at a time; ctx interrupts a write
// blocked on a full pipe (a CLI that stopped reading) through the write
// deadline.
func (p *Process) write(ctx context.Context, line []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = p.stdin.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	n, err := p.stdin.Write(line)
	if !stop() {
		<-fired
		_ = p.stdin.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// exitDuring is the error of a turn the process's end cut short (seen:
// stdout lines before the turn was written; written: the whole line went
// into the pipe). A turn that was never written, or whose bytes were still
// unread when the process ended, provably never reached the agent:
// Undelivered. One it may have read but printed nothing for is
// ExitedSilent; after output it is a crash (Exited).
func (p *Process) exitDuring(seen int64, written bool) error {
	err := p.turnExitErr()
	var te *agent.TurnError
	if !errors.As(err, &te) || te.Kind != agent.Exited {
		return err
	}
	p.mu.Lock()
	unread := p.unread
	p.mu.Unlock()
	switch {
	case !written || unread > 0:
		return &agent.TurnError{Kind: agent.Undelivered, Msg: "never read by the agent: " + te.Msg}
	case p.outLines.Load() == seen:
		return &agent.TurnError{Kind: agent.ExitedSilent, Msg: "before writing anything for the turn: " + te.Msg}
	}
	return err
}

// turnExitErr is the error of a turn that the process's end cut short.
func (p *Process) turnExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitErr != nil {
		return p.exitErr
	}
	msg := "agent exited before answering"
	if p.stopped {
		msg = "agent stopped before answering"
	}
	return &agent.TurnError{Kind: agent.Exited, Msg: msg}
}

// userLine is the stream-json user message for texts, newline-terminated.
func userLine(texts []string) ([]byte, error) {
	type block struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type message struct {
		Role    string  `json:"role"`
		Content []block `json:"content"`
	}
	msg := struct {
		Type    string  `json:"type"`
		Message message `json:"message"`
	}{Type: "user", Message: message{Role: "user"}}
	for _, t := range texts {
		msg.Message.Content = append(msg.Message.Content, block{Type: "text", Text: t})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil { // Encode appends the newline
		return nil, err
	}
	return buf.Bytes(), nil
}

// Stop ends the process: close stdin and wait StopGrace, SIGTERM the group
// and wait StopGrace, SIGKILL the group; it returns once the process has
// been reaped. If ctx ends first the group is SIGKILLed at once and ctx's
// error returned. Idempotent and safe concurrently with Turn.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()

	p.closeStdin()
	if p.await(ctx, p.grace) {
		return nil
	}
	if ctx.Err() == nil {
		p.signal(syscall.SIGTERM)
		if p.await(ctx, p.grace) {
			return nil
		}
	}
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("claude: stop: %w", ctx.Err())
	}
}

// await reports whether the process ended within d (on p's clock).
func (p *Process) await(ctx context.Context, d time.Duration) bool {
	t := p.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C():
	case <-ctx.Done():
	}
	return false
}

func (p *Process) closeStdin() { p.stdinOnce.Do(func() { p.stdin.Close() }) }

// exited reports whether the CLI itself has exited (its output may still
// be draining).
func (p *Process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reaped
}

// signal sends sig to the process group unless the leader has been reaped.
func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		_ = syscall.Kill(-p.pid, sig)
	}
}

// wait waits for the CLI to exit, kills what is left of its group, reaps
// it, waits for the readers and closes done.
func (p *Process) wait() {
	waitExited(p.pid)
	p.endLife()
	unread := unreadBytes(p.stdin) // before stdin is closed below
	p.mu.Lock()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // leftover grandchildren
	p.reaped = true
	p.unread = unread
	p.mu.Unlock()
	p.unwatchExited()
	werr := p.cmd.Wait()
	p.closeStdin()

	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	for _, c := range []chan struct{}{p.outDone, p.errDone} {
		select {
		case <-c:
		case <-ctx.Done():
			p.log.Warn("agent pipes still held after its group was killed; closing them")
			p.stdout.Close()
			p.stderr.Close()
			<-c
		}
	}

	p.mu.Lock()
	p.exitErr = p.exitError(werr)
	p.waiting = nil
	p.mu.Unlock()
	p.log.Debug("agent exited", "err", werr)
	if p.save != nil {
		// What the CLI wrote after the last turn's save, briefly: the
		// process's end waits for it.
		p.save(exitSaveTimeout)
	}
	close(p.done)
}

// exitError describes the end of the process (see ExitErr). p.mu is held.
func (p *Process) exitError(werr error) error {
	if p.noConv != "" {
		return &agent.TurnError{Kind: agent.ResumeFailed, Msg: p.noConv}
	}
	if werr == nil {
		return nil
	}
	msg := "agent exited: " + werr.Error()
	if p.stopped {
		msg = "agent stopped: " + werr.Error()
	}
	if len(p.tail) > 0 {
		msg += "; stderr: " + strings.Join(p.tail, "\n")
	}
	return &agent.TurnError{Kind: agent.Exited, Msg: msg}
}

// readStdout handles stdout line by line until EOF.
func (p *Process) readStdout() {
	defer close(p.outDone)
	defer p.stdout.Close()
	r := bufio.NewReaderSize(p.stdout, 64<<10)
	for {
		line, tooLong, err := readLine(r, maxLine)
		if tooLong {
			p.touch()
			p.log.Warn("agent output line too long; dropped", "limit", maxLine)
			if bytes.Contains(line[:min(len(line), 256)], []byte(`"type":"result"`)) {
				// the turn must still end: fail it rather than wait forever
				p.deliver(ResultLine{IsError: true, Subtype: "too_long", Result: fmt.Sprintf("result line over %d bytes", maxLine)})
			}
		} else if len(line) > 0 {
			p.touch()
			p.outLines.Add(1)
			p.handle(line)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				p.log.Debug("agent stdout", "err", err)
			}
			return
		}
	}
}

// handle acts on one stdout line. Only system/init and result matter;
// everything else, including non-JSON, is logged at debug and ignored.
func (p *Process) handle(line []byte) {
	var head struct {
		Type      string          `json:"type"`
		Subtype   string          `json:"subtype"`
		SessionID json.RawMessage `json:"session_id"`
		UUID      string          `json:"uuid"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		p.log.Debug("agent non-JSON line ignored", "line", clip(line, 200))
		p.arm(true)
		return
	}
	if head.Type != "result" {
		p.arm(head.Type != "system")
	}
	switch head.Type {
	case "system":
		switch head.Subtype {
		case "init":
			p.onInit(rawString(head.SessionID))
		case "api_retry":
			p.retryAt.CompareAndSwap(0, p.clk.Now().UnixNano())
		}
	case "result":
		r, err := parseResult(line)
		if err != nil {
			r = ResultLine{IsError: true, Subtype: "unparseable", Result: "unparseable result line: " + err.Error()}
		}
		r.Denials = parseDenials(line)
		p.deliver(r)
	case "assistant":
		p.noteEntry(head.UUID)
		p.onAssistant(line)
	case "user":
		p.noteEntry(head.UUID)
	case "control_request":
		p.onControlRequest(line)
	case "control_cancel_request":
		p.onControlCancel(line)
	case "stream_event", "control_response":
	default:
		p.log.Debug("agent line of unknown type ignored", "type", head.Type)
	}
}

// arm notes a stdout line that is not a result: a result after it answers
// the turn waiting now. progress: the line is the agent's own output.
func (p *Process) arm(progress bool) {
	if progress {
		p.lastProg.Store(p.clk.Now().UnixNano())
	}
	p.mu.Lock()
	if p.waiting != nil {
		p.armed = true
	}
	p.mu.Unlock()
}

// onInit records the id the CLI reports for a new conversation. A resumed
// run keeps the id it resumed with, whatever the CLI says.
func (p *Process) onInit(id string) {
	if id == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reported = id
	if p.spec.Resume {
		if id != p.sessionID {
			p.log.Debug("agent reported another session id on resume; keeping the resumed one",
				"resumed", p.sessionID, "reported", id)
		}
		return
	}
	p.sessionID = id
}

// deliver hands a result to the turn it answers: the turn waiting now,
// if the agent has started answering it (armed) and the result is of this
// conversation. Anything else — a result of an abandoned turn, an extra
// result after the real one, one before the turn was sent, one of another
// session — is logged and dropped, never attached to other messages.
func (p *Process) deliver(r ResultLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumeFailure(r) {
		r.ResumeFailed = true
		p.noConv = r.message()
	}
	ours := r.SessionID == "" || r.SessionID == p.sessionID || r.SessionID == p.reported
	switch {
	case p.skip > 0: // results come in order: this one is an abandoned turn's
		p.skip--
		p.log.Debug("late result of an abandoned turn dropped")
	case p.waiting != nil && ours && (p.armed || r.ResumeFailed):
		p.waiting <- r // buffered, never blocks
		p.waiting = nil
		if !r.IsError {
			p.answered = true
		}
	default:
		p.log.Warn("agent result that answers no turn dropped", "turn_waiting", p.waiting != nil,
			"session_id", r.SessionID, "is_error", r.IsError, "result", clip([]byte(r.message()), 200))
	}
}

// resumeFailure reports whether r says, in its structured fields, that the
// conversation this process was told to resume does not exist: only a
// --resume start that has not answered a turn yet, with an error naming
// its own session id. Words in an error text never count. p.mu is held.
func (p *Process) resumeFailure(r ResultLine) bool {
	if !p.spec.Resume || p.answered || !r.IsError || r.Subtype != "error_during_execution" {
		return false
	}
	for _, e := range r.Errors {
		if e == "No conversation found with session ID: "+p.sessionID {
			return true
		}
	}
	return false
}

// readStderr logs stderr lines to the session log and keeps the last few.
func (p *Process) readStderr() {
	defer close(p.errDone)
	defer p.stderr.Close()
	r := bufio.NewReaderSize(p.stderr, 16<<10)
	for {
		line, tooLong, err := readLine(r, maxErrLine)
		if len(line) > 0 || tooLong {
			p.touch()
			s := clip(line, tailLineLen)
			p.log.Info("agent stderr", "line", s)
			p.mu.Lock()
			p.tail = append(p.tail, s)
			if len(p.tail) > stderrTail {
				p.tail = p.tail[len(p.tail)-stderrTail:]
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line without its newline. A line longer than max is
// consumed and reported as tooLong, keeping only its first max bytes.
func readLine(r *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := r.ReadSlice('\n')
		if room := max - len(line); len(frag) > room {
			tooLong = true
			frag = frag[:room]
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return bytes.TrimRight(line, "\r\n"), tooLong, err
		}
	}
}

// clip is b as a string, cut to n bytes.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
