package claude

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// replayScript stands in for the CLI: it reads the user line, prints the
// recording $REPLAY_FILE, and after each control_request line (with
// REPLAY_WAIT set) reads one line from stdin — dispatch's control_response
// — into $REPLAY_OUT before printing on, as the real CLI waits for it.
const replayScript = `#!/bin/sh
read -r line
exec 3<"$REPLAY_FILE"
while IFS= read -r l <&3; do
  printf '%s\n' "$l"
  case "$l" in
  *'"type":"control_request"'*)
    if [ -n "$REPLAY_WAIT" ]; then IFS= read -r resp; printf '%s\n' "$resp" >>"$REPLAY_OUT"; fi ;;
  esac
done
cat >/dev/null
`

// permRecording is one recording of the real CLI 2.1.332 with a tool_use
// from the fake API (testdata README), with what the driver must make of
// it.
type permRecording struct {
	file     string
	mode     string                  // how the CLI was started
	answer   *agent.PermissionAnswer // the asker's answer; nil: it blocks until its ctx ends
	wait     bool                    // the CLI waits for the answer
	tool     string
	summary  string
	response string // the control_response the driver must write ("" none); REQ is the request id
	reply    string // prefix of the reply ("" the turn fails)
	denials  int
}

var permRecordings = []permRecording{
	{file: "ask-allow", mode: "ask", answer: &agent.PermissionAnswer{Allow: true}, wait: true, tool: "Bash", summary: "touch x",
		response: `{"type":"control_response","response":{"subtype":"success","request_id":"REQ","response":{"behavior":"allow","updatedInput":{"command":"touch x"}}}}`,
		reply:    "fake reply after tools: Bash ok: (Bash completed with no output)"},
	{file: "ask-deny", mode: "ask", answer: &agent.PermissionAnswer{Message: "the person said no"}, wait: true, tool: "Bash", summary: "touch x",
		response: `{"type":"control_response","response":{"subtype":"success","request_id":"REQ","response":{"behavior":"deny","message":"the person said no"}}}`,
		reply:    "fake reply after tools: Bash error: the person said no", denials: 1},
	{file: "ask-write", mode: "ask", answer: &agent.PermissionAnswer{Allow: true}, wait: true, tool: "Write", summary: "/tmp/permx/wd/a.txt (6 B)",
		response: `{"type":"control_response","response":{"subtype":"success","request_id":"REQ","response":{"behavior":"allow","updatedInput":{"file_path":"/tmp/permx/wd/a.txt","content":"hello\n"}}}}`,
		reply:    "fake reply after tools: Write ok: File created successfully"},
	// A question to the person: allowed with the answers in the input.
	{file: "ask-question", mode: "ask", wait: true, tool: "AskUserQuestion", summary: "Which branch?",
		answer:   &agent.PermissionAnswer{Allow: true, UpdatedInput: json.RawMessage(`{"questions":[{"question":"Which branch?","header":"Branch","options":[{"label":"main","description":"the trunk"},{"label":"dev","description":"the work"}],"multiSelect":false}],"answers":{"Which branch?":"dev"}}`)},
		response: `{"type":"control_response","response":{"subtype":"success","request_id":"REQ","response":{"behavior":"allow","updatedInput":{"questions":[{"question":"Which branch?","header":"Branch","options":[{"label":"main","description":"the trunk"},{"label":"dev","description":"the work"}],"multiSelect":false}],"answers":{"Which branch?":"dev"}}}}}`,
		reply:    `fake reply after tools: AskUserQuestion ok: Your questions have been answered: "Which branch?"="dev".`},
	// The CLI withdrew the request (control_cancel_request, after an
	// interrupt): the asker's ctx ends and nothing is written.
	{file: "ask-cancel", mode: "ask", tool: "Bash", summary: "touch x", denials: 1},
	{file: "deny", mode: "deny", tool: "Bash", summary: "touch x", reply: "fake reply after tools: Bash error: touch in '/tmp/permx/wd/x' needs approval", denials: 1},
	{file: "readonly", mode: "deny", tool: "Bash", summary: "echo hi", reply: "fake reply after tools: Bash ok: hi"},
}

// TestRecordedPermissionsTableComplete: every permission recording has a row.
func TestRecordedPermissionsTableComplete(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(recordedDir, "cli-permission-*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no permission recordings in %s: %v", recordedDir, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "cli-permission-"), ".jsonl")
		found := false
		for _, r := range permRecordings {
			found = found || r.file == name
		}
		if !found {
			t.Errorf("%s has no row in permRecordings", filepath.Base(f))
		}
	}
}

// TestRecordedPermissions replays what the real CLI printed when the fake
// API made it call a tool, in each permission mode, through the driver:
// the request reaches the asker with the recorded fields, the driver's
// control_response has exactly the shape the CLI accepted, tool_use blocks
// arrive as progress, permission_denials as Result.Denials, and a
// withdrawn request is closed without an answer.
func TestRecordedPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "replay")
	if err := os.WriteFile(script, []byte(replayScript), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, rc := range permRecordings {
		t.Run(rc.file, func(t *testing.T) {
			lines := readRecorded(t, "cli-permission-"+rc.file+".jsonl")
			var recReq controlRequest // the recorded request, if any
			for _, l := range lines {
				if strings.Contains(string(l), `"type":"control_request"`) {
					if err := json.Unmarshal(l, &recReq); err != nil {
						t.Fatal(err)
					}
				}
			}
			if (recReq.RequestID != "") != (rc.mode == "ask") {
				t.Fatalf("recording has request %q in mode %s", recReq.RequestID, rc.mode)
			}
			abs, _ := filepath.Abs(filepath.Join(recordedDir, "cli-permission-"+rc.file+".jsonl"))
			out := filepath.Join(dir, rc.file+".out")
			env := map[string]string{"REPLAY_FILE": abs, "REPLAY_OUT": out}
			if rc.wait {
				env["REPLAY_WAIT"] = "1"
			}

			var mu sync.Mutex
			var asked []agent.PermissionRequest
			var progress []agent.Progress
			askerDone := make(chan error, 1)
			asker := agent.AskerFunc(func(ctx context.Context, req agent.PermissionRequest) (agent.PermissionAnswer, error) {
				mu.Lock()
				asked = append(asked, req)
				mu.Unlock()
				if rc.answer != nil {
					return *rc.answer, nil
				}
				<-ctx.Done()
				askerDone <- context.Cause(ctx)
				return agent.PermissionAnswer{}, ctx.Err()
			})
			logs := &syncbuf.Buffer{}
			spec := agent.Spec{ChatID: "chat", SessionID: "s" + string(rune('a'+i)), Permissions: asker,
				Progress: func(p agent.Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() },
				Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			mode, _ := ParsePermissionMode(rc.mode)
			p, err := New(Config{Command: script, StopGrace: grace, Env: env, Permissions: mode}).Start(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := p.Turn(ctx, []string{"hello"})
			switch {
			case rc.reply == "" && err == nil:
				t.Errorf("turn succeeded (%q), want the recorded error result", res.Text)
			case rc.reply != "" && err != nil:
				t.Fatalf("Turn: %v", err)
			case rc.reply != "" && !strings.HasPrefix(res.Text, rc.reply):
				t.Errorf("reply %q, want it to start with %q", res.Text, rc.reply)
			}
			if err == nil && len(res.Denials) != rc.denials {
				t.Errorf("denials %+v, want %d", res.Denials, rc.denials)
			}
			if rc.answer == nil && recReq.RequestID != "" {
				select {
				case cause := <-askerDone:
					if cause != errWithdrawn {
						t.Errorf("asker's context ended with %v, want the withdrawal", cause)
					}
				case <-ctx.Done():
					t.Fatal("the withdrawn request's asker was never released")
				}
			}
			if err := p.Stop(context.Background()); err != nil {
				t.Errorf("Stop: %v", err)
			}

			mu.Lock()
			defer mu.Unlock()
			if len(progress) != 1 || progress[0].Tool != rc.tool || progress[0].Summary != rc.summary || progress[0].ToolUseID == "" {
				t.Errorf("progress %+v, want one %s %q", progress, rc.tool, rc.summary)
			}
			if recReq.RequestID != "" {
				r := recReq.Request
				if len(asked) != 1 {
					t.Fatalf("asked %d times", len(asked))
				}
				a := asked[0]
				if a.ID != recReq.RequestID || a.Tool != rc.tool || a.Tool != r.ToolName || a.DisplayName != r.DisplayName ||
					a.Description != r.Description || a.ToolUseID != r.ToolUseID || a.ToolUseID != progress[0].ToolUseID ||
					a.BlockedPath != r.BlockedPath || a.Summary != rc.summary || string(a.Input) != string(r.Input) ||
					(len(a.Suggestions) == 0) != (rc.tool == "AskUserQuestion") || a.UserInteraction != (rc.tool == "AskUserQuestion") {
					t.Errorf("asked %+v\nrecorded %+v", a, recReq)
				}
			} else if len(asked) != 0 {
				t.Errorf("asked %+v without a control request", asked)
			}
			got, _ := os.ReadFile(out)
			want := ""
			if rc.response != "" {
				want = strings.ReplaceAll(rc.response, "REQ", recReq.RequestID) + "\n"
			}
			if string(got) != want {
				t.Errorf("control responses written:\n%s\nwant:\n%s", got, want)
			}
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
					t.Errorf("driver complained about a recorded line: %s", l)
				}
			}
			if t.Failed() {
				t.Logf("driver log:\n%s", logs.String())
			}
		})
	}
}
