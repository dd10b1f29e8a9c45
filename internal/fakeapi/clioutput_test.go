package fakeapi

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecordedCLIOutput keeps the real CLI lines in testdata honest: every
// line is JSON, runs start with system/init and end with a result, and the
// error status the CLI reports is the one the fake sends in that mode.
func TestRecordedCLIOutput(t *testing.T) {
	files, err := filepath.Glob("testdata/cli-output-*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "cli-output-"), ".jsonl")
		t.Run(name, func(t *testing.T) {
			mode, err := ParseMode(strings.TrimSuffix(strings.TrimSuffix(name, "-noretry"), "-resume"))
			if err != nil {
				t.Fatal(err)
			}
			type line struct {
				Type           string
				Subtype        string
				IsError        bool   `json:"is_error"`
				Result         string `json:"result"`
				APIErrorStatus int    `json:"api_error_status"`
				APIErrorType   string `json:"api_error_type"`
			}
			var lines []line
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			sc := bufio.NewScanner(fh)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var l line
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %d: %v", len(lines)+1, err)
				}
				lines = append(lines, l)
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if len(lines) < 2 || lines[0].Type != "system" || lines[0].Subtype != "init" {
				t.Fatalf("does not start with system/init: %+v", lines)
			}
			res := lines[len(lines)-1]
			if res.Type != "result" || res.IsError != (mode != ModeOK) {
				t.Fatalf("last line %+v", res)
			}
			if e, ok := modeErrors[mode]; ok && (res.APIErrorStatus != e.status || res.APIErrorType != e.errType) {
				t.Errorf("CLI saw %d %s, fake sends %d %s", res.APIErrorStatus, res.APIErrorType, e.status, e.errType)
			}
			if mode == ModeOK && !strings.HasPrefix(res.Result, "fake reply #") {
				t.Errorf("result %q", res.Result)
			}
		})
	}
}
