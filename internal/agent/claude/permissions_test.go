package claude

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// pipeCLI is a Process wired to pipes instead of a child: the test is the
// CLI, writing its stdout lines to out and reading dispatch's lines from in.
type pipeCLI struct {
	p   *Process
	out *os.File      // the CLI's stdout (write end)
	in  *bufio.Reader // the CLI's stdin (read end)
	log *syncbuf.Buffer
}

func newPipeCLI(t testing.TB, spec agent.Spec, timeout time.Duration) *pipeCLI {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	spec.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := &Process{spec: spec, log: spec.Log, clk: clock.Real{}, grace: time.Second, stdin: inW, stdout: outR,
		outDone: make(chan struct{}), errDone: make(chan struct{}), done: make(chan struct{}), permTimeout: timeout}
	p.life, p.endLife = context.WithCancel(context.Background())
	go p.readStdout()
	t.Cleanup(func() {
		outW.Close()
		<-p.outDone
		p.endLife()
		inW.Close()
		inR.Close()
	})
	return &pipeCLI{p: p, out: outW, in: bufio.NewReader(inR), log: logs}
}

func (c *pipeCLI) write(t testing.TB, line string) {
	t.Helper()
	if _, err := c.out.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// read reads dispatch's next line, bounded.
func (c *pipeCLI) read(t testing.TB) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		l, _ := c.in.ReadString('\n')
		got <- strings.TrimSuffix(l, "\n")
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("dispatch wrote nothing")
		return ""
	}
}

func canUseTool(id, tool, input string) string {
	return fmt.Sprintf(`{"type":"control_request","request_id":%q,"request":{"subtype":"can_use_tool","tool_name":%q,"display_name":%q,"input":%s,"description":"d","tool_use_id":"toolu_1"}}`, id, tool, tool, input)
}

// TestControlUnknownSubtype: a control request dispatch does not handle
// gets the error response the CLI itself uses, at once, so the CLI never
// waits on it.
func TestControlUnknownSubtype(t *testing.T) {
	c := newPipeCLI(t, agent.Spec{}, time.Minute)
	c.write(t, `{"type":"control_request","request_id":"hk-1","request":{"subtype":"hook_callback","callback_id":"x"}}`)
	want := `{"type":"control_response","response":{"subtype":"error","request_id":"hk-1","error":"dispatch does not support control requests of subtype hook_callback"}}`
	if got := c.read(t); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestControlAnswers: the shapes of allow (with the asked input, or the
// person's edit) and deny (a default message when the asker gave none),
// and an asker error refusing with its text.
func TestControlAnswers(t *testing.T) {
	for _, tt := range []struct {
		name string
		ans  agent.PermissionAnswer
		err  error
		want string
	}{
		{"allow", agent.PermissionAnswer{Allow: true}, nil,
			`{"behavior":"allow","updatedInput":{"command":"touch <x> & y"}}`},
		{"allow edited", agent.PermissionAnswer{Allow: true, UpdatedInput: json.RawMessage(`{"command":"true"}`)}, nil,
			`{"behavior":"allow","updatedInput":{"command":"true"}}`},
		{"deny", agent.PermissionAnswer{Message: "no"}, nil, `{"behavior":"deny","message":"no"}`},
		{"deny without message", agent.PermissionAnswer{}, nil, `{"behavior":"deny","message":"Permission denied."}`},
		{"asker error", agent.PermissionAnswer{Allow: true}, fmt.Errorf("store down"), `{"behavior":"deny","message":"Permission denied: store down"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ask := agent.AskerFunc(func(context.Context, agent.PermissionRequest) (agent.PermissionAnswer, error) { return tt.ans, tt.err })
			c := newPipeCLI(t, agent.Spec{Permissions: ask}, time.Minute)
			c.write(t, canUseTool("r-1", "Bash", `{"command":"touch <x> & y"}`))
			want := `{"type":"control_response","response":{"subtype":"success","request_id":"r-1","response":` + tt.want + `}}`
			if got := c.read(t); got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// TestControlParallelAndExit: requests are asked concurrently (one
// unanswered request does not hold up the next), and requests open when
// the agent exits are dropped without an answer.
func TestControlParallelAndExit(t *testing.T) {
	release := make(chan struct{})
	started := make(chan string, 2)
	ended := make(chan error, 2)
	ask := agent.AskerFunc(func(ctx context.Context, r agent.PermissionRequest) (agent.PermissionAnswer, error) {
		started <- r.ID
		if r.ID == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
				ended <- context.Cause(ctx)
				return agent.PermissionAnswer{}, ctx.Err()
			}
		}
		return agent.PermissionAnswer{Allow: true}, nil
	})
	c := newPipeCLI(t, agent.Spec{Permissions: ask}, time.Minute)
	c.write(t, canUseTool("slow", "Bash", `{"command":"a"}`))
	c.write(t, canUseTool("fast", "Bash", `{"command":"b"}`))
	if got := c.read(t); !strings.Contains(got, `"request_id":"fast"`) {
		t.Fatalf("first answer %s, want the fast one's", got)
	}
	ids := []string{<-started, <-started}
	// The fast request's goroutine closes it just after answering.
	for deadline := time.Now().Add(10 * time.Second); c.p.Asking() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Asking() = %d with only the slow request open", c.p.Asking())
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"fast", "slow"}) {
		t.Errorf("asked %v", ids)
	}
	c.p.endLife() // the agent exited
	if cause := <-ended; cause != errExited {
		t.Errorf("open request ended with %v, want the exit", cause)
	}
	c.out.Close()
	<-c.p.outDone
	// Once the request's goroutine is done, any answer it wrote is in the pipe.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.p.mu.Lock()
		n := len(c.p.asks)
		c.p.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the open request never closed")
		}
	}
	c.p.closeStdin()
	if l, err := c.in.ReadString('\n'); err == nil || l != "" {
		t.Errorf("answered after the exit: %q", l)
	}
}

// BenchmarkControlRequestToAsker measures the driver's path from the CLI
// writing a can_use_tool line to the asker being called: the pipe read,
// the line's parse, the summary and the hand-off to the asker's goroutine.
// It reports the 50th and 99th percentiles (ns) over b.N requests.
func BenchmarkControlRequestToAsker(b *testing.B) {
	called := make(chan time.Time, 1)
	ask := agent.AskerFunc(func(context.Context, agent.PermissionRequest) (agent.PermissionAnswer, error) {
		called <- time.Now()
		return agent.PermissionAnswer{Allow: true}, nil
	})
	c := newPipeCLI(b, agent.Spec{Permissions: ask}, time.Minute)
	line := []byte(canUseTool("REQ-00000000", "Bash", `{"command":"touch x","description":"make x"}`) + "\n")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		copy(line[bytesIndex(line, "REQ-")+4:], fmt.Sprintf("%08d", i))
		t0 := time.Now()
		if _, err := c.out.Write(line); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-called).Sub(t0))
		if _, err := c.in.ReadString('\n'); err != nil { // the answer
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

func bytesIndex(b []byte, s string) int { return strings.Index(string(b), s) }
