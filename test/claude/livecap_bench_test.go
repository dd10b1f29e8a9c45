package claude

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent/claude"
	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/resources"
)

// The live-cap benchmarks run the real Claude Code CLI many times (a few
// minutes on a small machine), so they run only when asked:
//
//	DISPATCH_BENCH=1 go test -run 'Bench' -v -timeout 30m ./test/claude/
//
// DISPATCH_BENCH_ROUNDS sets the cold starts per chat (default 10).
func benchOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("DISPATCH_BENCH") != "1" {
		t.Skip("benchmark: set DISPATCH_BENCH=1 to run it")
	}
}

func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("DISPATCH_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// quantile is the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// sendTimed accepts text for chat and polls every 2 ms until it is done:
// the time from the accept request to the stored reply.
func (r *rig) sendTimed(chat, text string) time.Duration {
	r.t.Helper()
	start := time.Now()
	id := r.send(chat, text)
	deadline := start.Add(turnTimeout)
	for {
		m := r.d.Message(id)
		if m.State == "done" {
			return time.Since(start)
		}
		if m.State == "dead" || time.Now().After(deadline) {
			r.t.Fatalf("message %s for %s: %s (%s)", id, chat, m.State, m.Error)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBenchHibernatedColdStart measures the cold start of a hibernated chat
// through dispatch (accept → reply, the agent resumed with --resume) next
// to the CLI's own resume-to-reply time, measured in the same run against
// the same fake API: start `claude --resume ID`, write one user line, wait
// for its result.
//
// Two dispatch figures: "slot free" (the chat was hibernated earlier and a
// slot is free now) and "at the cap" (max_live 1 and another chat's idle
// agent must be hibernated first, its stop on the path).
func TestBenchHibernatedColdStart(t *testing.T) {
	benchOnly(t)
	rounds := benchRounds()
	r := start(t, fakeapi.ModeOK, map[string]any{"sessions.max_live": 1})
	r.ask("a", "hello a")
	r.ask("b", "hello b") // a is hibernated for b

	var atCap, slotFree, cli []time.Duration
	var freeSent []time.Time
	cliTurn, peak := cliResume(t, r)
	for i := range rounds {
		// The CLI alone, interleaved so that both see the same machine load.
		cli = append(cli, cliTurn(fmt.Sprintf("alone %d", i)))
		// at the cap: b's idle agent is hibernated for a, then a's for b
		atCap = append(atCap, r.sendTimed("a", fmt.Sprintf("cap a %d", i)))
		atCap = append(atCap, r.sendTimed("b", fmt.Sprintf("cap b %d", i)))
		// slot free: b is stopped by an operator first
		if _, _, code := r.d.Run("sessions", "kill", "b"); code != 0 {
			t.Fatal("sessions kill b")
		}
		r.d.WaitFor(func() bool { return len(r.d.Procs()) == 0 }, 20*time.Second, "no agent alive")
		freeSent = append(freeSent, time.Now())
		slotFree = append(slotFree, r.sendTimed("a", fmt.Sprintf("free a %d", i)))
		cli = append(cli, cliTurn(fmt.Sprintf("alone again %d", i)))
		if s := r.session("a"); s.Restarts != 0 {
			t.Fatalf("a restarted: %+v", s)
		}
	}
	for _, c := range []string{"a", "b"} {
		if s := r.session(c); s.Turns < int64(rounds) {
			t.Errorf("%s: %d turns", c, s.Turns)
		}
	}

	// Where the time goes (slot free): accept → agent started (lifecycle
	// start line), the rest is the agent's turn.
	var toStart []time.Duration
	for _, sent := range freeSent {
		for _, e := range r.d.Events("a", "start", "resume") {
			if e.Time.After(sent) {
				toStart = append(toStart, e.Time.Sub(sent))
				break
			}
		}
	}
	t.Logf("  slot free: accept → agent process started p50 %d ms (%v)", quantile(toStart, .5).Milliseconds(), toStart)

	t.Logf("cold start of a hibernated chat, %d runs each (accept → reply):", rounds)
	t.Logf("  dispatch, slot free:  p50 %4d ms  p95 %4d ms", quantile(slotFree, .5).Milliseconds(), quantile(slotFree, .95).Milliseconds())
	t.Logf("  dispatch, at the cap: p50 %4d ms  p95 %4d ms  (includes hibernating the other chat's agent)",
		quantile(atCap, .5).Milliseconds(), quantile(atCap, .95).Milliseconds())
	t.Logf("  CLI alone (start --resume → result, %d runs): p50 %4d ms  p95 %4d ms; peak RSS in a turn %d MB",
		len(cli), quantile(cli, .5).Milliseconds(), quantile(cli, .95).Milliseconds(), *peak>>20)
	t.Logf("  dispatch adds at p50: slot free %+d ms, at the cap %+d ms",
		(quantile(slotFree, .5) - quantile(cli, .5)).Milliseconds(), (quantile(atCap, .5) - quantile(cli, .5)).Milliseconds())
}

// cliResume prepares a conversation for the CLI alone and returns a turn
// function: each call starts the CLI with --resume on it and returns the
// time from starting the process to its result line. peak is the largest
// resident memory (process group) seen during those turns.
func cliResume(t *testing.T, r *rig) (turnFn func(text string) time.Duration, peak *uint64) {
	t.Helper()
	bin := claudeBin(t)
	dir := t.TempDir()
	env := claude.Environ(os.Environ(), nil, map[string]string{
		"ANTHROPIC_BASE_URL":                       r.api.URL(),
		"ANTHROPIC_API_KEY":                        "sk-ant-dummy-for-the-fake-api",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_AUTOUPDATER":                      "1",
		"CLAUDE_CODE_MAX_RETRIES":                  "0",
		"HOME":                                     r.home,
		"XDG_CONFIG_HOME":                          filepath.Join(r.home, ".config"),
	})
	id := "3f6c1d4e-0000-4000-8000-00000000b001"
	peak = new(uint64)
	turn := func(args []string, text string) time.Duration {
		cmd := exec.Command(bin, append([]string{"-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose"}, args...)...)
		cmd.Dir, cmd.Env = dir, env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if got, err := resources.GroupRSS("", map[int]bool{cmd.Process.Pid: true}); err == nil {
					*peak = max(*peak, got[cmd.Process.Pid])
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		line, _ := json.Marshal(map[string]any{"type": "user", "message": map[string]any{"role": "user", "content": text}})
		if _, err := stdin.Write(append(line, '\n')); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var took time.Duration
		for sc.Scan() {
			var m struct {
				Type    string `json:"type"`
				IsError bool   `json:"is_error"`
				Result  string `json:"result"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Type == "result" {
				took = time.Since(start)
				if m.IsError {
					t.Fatalf("CLI turn failed: %s", m.Result)
				}
				break
			}
		}
		close(stop)
		wg.Wait()
		if took == 0 {
			t.Fatal("the CLI gave no result")
		}
		stdin.Close()
		_, _ = io.Copy(io.Discard, stdout)
		return took
	}
	turn([]string{"--session-id", id}, "hello")
	return func(text string) time.Duration { return turn([]string{"--resume", id}, text) }, peak
}

// TestBenchPeakMemory: 30 chats × 3 messages (each chat sends its next
// message when the last is answered; the chats run at once), once with
// max_live 5 and once without a cap; the peak of all agents' resident
// memory together, sampled from /proc every 100 ms, against one agent's.
func TestBenchPeakMemory(t *testing.T) {
	benchOnly(t)
	for _, maxLive := range []int{5, 0} {
		t.Run(fmt.Sprintf("max_live=%d", maxLive), func(t *testing.T) {
			r := start(t, fakeapi.ModeOK, map[string]any{
				"sessions.max_live":               maxLive,
				"health.stuck_timeout":            "120s",
				"health.first_turn_stuck_timeout": "240s",
			})
			var (
				mu              sync.Mutex
				peakSum, onePer uint64
				peakProcs       int
			)
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					procs := r.d.Procs()
					pg := map[int]bool{}
					for _, p := range procs {
						pg[p.Pid] = true // group leaders and children alike: sum each process once
					}
					got, _ := resources.GroupRSS("", pg)
					var sum, mx uint64
					for _, v := range got {
						sum += v
						mx = max(mx, v)
					}
					mu.Lock()
					peakSum, onePer, peakProcs = max(peakSum, sum), max(onePer, mx), max(peakProcs, len(procs))
					mu.Unlock()
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			begin := time.Now()
			var wg sync.WaitGroup
			for c := range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					chat := fmt.Sprintf("chat-%02d", c)
					for m := range 3 {
						id := r.send(chat, fmt.Sprintf("message %d from %s", m, chat))
						r.d.WaitMessage(id, "done", 10*time.Minute)
					}
				}()
			}
			wg.Wait()
			took := time.Since(begin)
			close(stop)
			<-sampled
			hib := 0
			for _, s := range r.d.Status().Sessions {
				if s.StopReason == "hibernated" {
					hib++
				}
			}
			t.Logf("max_live %d: 90 messages in %s; peak of all agents %d MB with %d processes at most; largest agent %d MB; peak = %.1f × the largest agent; %d sessions hibernated at the end",
				maxLive, took.Round(time.Second), peakSum>>20, peakProcs, onePer>>20, float64(peakSum)/float64(max(onePer, 1)), hib)
			if maxLive > 0 && peakProcs > maxLive {
				t.Errorf("%d agent processes at once, over max_live %d", peakProcs, maxLive)
			}
		})
	}
}
