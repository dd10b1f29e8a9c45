package claude

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/testutil/syncbuf"
)

// recordedDir holds the stdout of the real Claude Code CLI 2.1.332 answering
// through the fake API in each of its modes (see its README.md).
const recordedDir = "../../fakeapi/testdata"

// noError marks a recording whose result is a success.
const noError = agent.Kind(-1)

type recording struct {
	file   string
	want   agent.Kind
	status int // api_error_status the CLI reported
}

// recorded maps every recording to the classification its result line must
// get. Connection failures (refused, cut stream, timeout) carry no HTTP
// status: only the wording tells them apart, so they are the rows most
// likely to break when the CLI changes its messages.
var recorded = []recording{
	{"cli-output-ok.jsonl", noError, 0},
	{"cli-output-ok-resume.jsonl", noError, 0},
	{"cli-output-500.jsonl", agent.Outage, 500},
	{"cli-output-529.jsonl", agent.Outage, 529},
	{"cli-output-529-noretry.jsonl", agent.Outage, 529},
	{"cli-output-429.jsonl", agent.Outage, 429},
	{"cli-output-refuse.jsonl", agent.Outage, 0},
	{"cli-output-refuse-noretry.jsonl", agent.Outage, 0},
	{"cli-output-cut_stream.jsonl", agent.Outage, 0},
	{"cli-output-cut_stream-noretry.jsonl", agent.Outage, 0},
	{"cli-output-hang-noretry.jsonl", agent.Outage, 0},
	{"cli-output-401.jsonl", agent.Auth, 401},
	{"cli-output-401-noretry.jsonl", agent.Auth, 401},
	{"cli-output-400_too_long.jsonl", agent.ContextTooLong, 400},
}

// readRecorded returns the non-empty lines of a recording.
func readRecorded(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordedDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for l := range bytes.Lines(b) {
		if l = bytes.TrimRight(l, "\r\n"); len(l) > 0 {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s is empty", file)
	}
	return out
}

// TestRecordedTableComplete: every recording in testdata has a row above,
// so a new recording cannot go unclassified.
func TestRecordedTableComplete(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(recordedDir, "cli-output-*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in %s: %v", recordedDir, err)
	}
	for _, f := range files {
		if !slices.ContainsFunc(recorded, func(r recording) bool { return r.file == filepath.Base(f) }) {
			t.Errorf("%s has no row in the recorded table", filepath.Base(f))
		}
	}
}

// TestRecordedClassify feeds the result line of each real recording through
// parseResult and Classify: ok is a success, server errors, rate limits and
// unreachable or dropped connections are outages, 401 is auth (with the
// operator hint), and the 400 prompt-too-long is ContextTooLong.
func TestRecordedClassify(t *testing.T) {
	for _, rc := range recorded {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(rc.file, "cli-output-"), ".jsonl"), func(t *testing.T) {
			lines := readRecorded(t, rc.file)
			last := lines[len(lines)-1]
			var head struct{ Type string }
			if err := json.Unmarshal(last, &head); err != nil || head.Type != "result" {
				t.Fatalf("last line is not a result (%v): %.200s", err, last)
			}
			r, err := parseResult(last)
			if err != nil {
				t.Fatalf("parseResult: %v", err)
			}
			if r.SessionID == "" {
				t.Error("result line without session_id")
			}
			if r.APIErrorStatus != rc.status {
				t.Errorf("APIErrorStatus = %d, want %d", r.APIErrorStatus, rc.status)
			}
			te := Classify(r)
			if rc.want == noError {
				if te != nil {
					t.Fatalf("Classify = %v, want success", te)
				}
				if !strings.HasPrefix(r.Result, "fake reply #") {
					t.Errorf("Result = %q, want the fake's reply", r.Result)
				}
				return
			}
			if te == nil {
				t.Fatalf("Classify = nil for error result %+v, want %v", r, rc.want)
			}
			if te.Kind != rc.want {
				t.Errorf("Kind = %v, want %v: %v", te.Kind, rc.want, te)
			}
			if te.Status != rc.status {
				t.Errorf("Status = %d, want %d", te.Status, rc.status)
			}
			if r.Result == "" || !strings.Contains(te.Msg, r.Result) {
				t.Errorf("Msg %q does not carry the CLI's result text %q", te.Msg, r.Result)
			}
			if rc.want == agent.Auth && !strings.Contains(te.Msg, "ANTHROPIC_API_KEY") {
				t.Errorf("auth error without the operator hint: %q", te.Msg)
			}
		})
	}
}

// TestRecordedStream checks every line of every recording, then replays
// each recording through the real driver: a script stands in for the CLI,
// reads the user line dispatch writes and prints the recorded lines. Every
// line must be handled without a warning (system/api_retry and the other
// line types dispatch does not use are ignored), the session id must come
// from system/init, and the turn must end with the recording's outcome.
func TestRecordedStream(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "replay")
	// The arguments dispatch passes are ignored; the recording is printed
	// only once the user line has arrived, as the real CLI does.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nread -r line\ncat \"$REPLAY_FILE\"\ncat >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rc := range recorded {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(rc.file, "cli-output-"), ".jsonl"), func(t *testing.T) {
			lines := readRecorded(t, rc.file)
			var initID string
			types := map[string]int{}
			for i, l := range lines {
				var head struct {
					Type      string `json:"type"`
					Subtype   string `json:"subtype"`
					SessionID string `json:"session_id"`
				}
				if err := json.Unmarshal(l, &head); err != nil {
					t.Fatalf("line %d is not JSON: %v", i+1, err)
				}
				types[head.Type+"/"+head.Subtype]++
				if i == 0 {
					if head.Type != "system" || head.Subtype != "init" || head.SessionID == "" {
						t.Fatalf("first line is not system/init with a session_id: %.200s", l)
					}
					initID = head.SessionID
				}
				if head.Type == "result" && i != len(lines)-1 {
					t.Fatalf("result line %d is not the last (%d lines)", i+1, len(lines))
				}
			}
			t.Logf("line types: %v", types)

			abs, err := filepath.Abs(filepath.Join(recordedDir, rc.file))
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncbuf.Buffer{}
			log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			resume := strings.Contains(rc.file, "resume")
			spec := agent.Spec{ChatID: "chat", Log: log}
			if resume {
				spec.SessionID, spec.Resume = initID, true
			} else {
				spec.SessionID = "given-by-dispatch"
			}
			a := New(Config{Command: script, StopGrace: grace, Env: map[string]string{"REPLAY_FILE": abs}})
			p, err := a.Start(context.Background(), spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer func() {
				if err := p.Stop(context.Background()); err != nil {
					t.Errorf("Stop: %v", err)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := p.Turn(ctx, []string{"hello"})
			if rc.want == noError {
				if err != nil {
					t.Fatalf("Turn: %v", err)
				}
				if !strings.HasPrefix(res.Text, "fake reply #") {
					t.Errorf("reply %q, want the fake's reply", res.Text)
				}
				if res.SessionID != initID {
					t.Errorf("result session id %q, want %q from system/init", res.SessionID, initID)
				}
			} else {
				var te *agent.TurnError
				if !errors.As(err, &te) {
					t.Fatalf("Turn: err = %v (%T), want a *agent.TurnError of kind %v", err, err, rc.want)
				}
				if te.Kind != rc.want || te.Status != rc.status {
					t.Errorf("Turn: %v (kind %v, status %d), want kind %v, status %d", te, te.Kind, te.Status, rc.want, rc.status)
				}
			}
			if got := p.SessionID(); got != initID {
				t.Errorf("SessionID() = %q, want %q (from system/init)", got, initID)
			}
			if err := p.Stop(context.Background()); err != nil {
				t.Errorf("Stop: %v", err)
			}
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
					t.Errorf("driver complained about a recorded line: %s", l)
				}
				if strings.Contains(l, "no turn waiting") || strings.Contains(l, "non-JSON") {
					t.Errorf("driver mishandled a recorded line: %s", l)
				}
			}
			if t.Failed() {
				t.Logf("driver log:\n%s", logs.String())
			}
		})
	}
}
