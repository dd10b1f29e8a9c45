package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// schedDaemon serves the real API routes on a config's control socket
// with schedules kept in memory (judged by the schedule rules); every
// other backend call would panic, and is not made.
type schedDaemon struct {
	api.Backend
	mu    sync.Mutex
	list  []wire.Schedule
	added []wire.ScheduleIn
}

var schedNow = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func (d *schedDaemon) Schedules(_ context.Context, chat string) ([]wire.Schedule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []wire.Schedule
	for _, s := range d.list {
		if chat == "" || s.ChatID == chat {
			out = append(out, s)
		}
	}
	return out, nil
}

func (d *schedDaemon) find(id string) (int, error) {
	for i, s := range d.list {
		if s.ID == id {
			return i, nil
		}
	}
	return 0, store.ErrNotFound
}

func (d *schedDaemon) Schedule(_ context.Context, id string) (wire.Schedule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.find(id)
	if err != nil {
		return wire.Schedule{}, err
	}
	return d.list[i], nil
}

func (d *schedDaemon) AddSchedule(_ context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.added = append(d.added, in)
	sp := schedule.Spec{Kind: schedule.Cron, Expr: in.Cron, TZ: in.TZ, Created: schedNow}
	switch {
	case in.Every != "":
		sp.Kind, sp.Expr = schedule.Every, in.Every
	case in.At != "":
		sp.Kind, sp.Expr = schedule.At, in.At
	}
	sc, err := schedule.Parse(sp)
	if err != nil {
		return wire.Schedule{}, err
	}
	s := wire.Schedule{ID: fmt.Sprintf("s-%d", len(d.added)), ChatID: in.ChatID, Kind: string(sp.Kind), Expr: sp.Expr,
		TZ: in.TZ, Text: in.Text, CatchUp: "one", CreatedAt: schedNow.Format(time.RFC3339)}
	if n, ok := sc.Next(schedNow); ok {
		s.Next = n.At.Format(time.RFC3339)
	}
	d.list = append(d.list, s)
	return s, nil
}

func (d *schedDaemon) RemoveSchedule(_ context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.find(id)
	if err != nil {
		return err
	}
	d.list = append(d.list[:i], d.list[i+1:]...)
	return nil
}

func (d *schedDaemon) PauseSchedule(_ context.Context, id string, paused bool) (wire.Schedule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.find(id)
	if err != nil {
		return wire.Schedule{}, err
	}
	d.list[i].Paused = paused
	return d.list[i], nil
}

// startSchedDaemon serves d on the control socket of a fresh config and
// returns the config's path.
func startSchedDaemon(t *testing.T, d *schedDaemon) string {
	t.Helper()
	dir := shortDir(t)
	cfg := writeConfig(t, dir, "")
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "state", "dispatch.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.Handler(d, nil, nil, slog.New(slog.DiscardHandler))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return cfg
}

// The flags are checked before the daemon is asked: exactly one kind, no
// zone for an interval, a known catch-up policy.
func TestScheduleAddFlags(t *testing.T) {
	d := &schedDaemon{}
	cfg := startSchedDaemon(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"alice", "hi"}, "give exactly one of --cron, --every and --at"},
		{[]string{"alice", "hi", "--cron", "0 8 * * *", "--every", "1h"}, "give exactly one of --cron, --every and --at"},
		{[]string{"alice", "hi", "--at", "2026-12-24T17:00", "--every", "1h"}, "give exactly one of"},
		{[]string{"alice", "hi", "--every", "1h", "--tz", "Europe/Berlin"}, "--tz does not apply to --every"},
		{[]string{"alice", "hi", "--every", "1h", "--catch-up", "most"}, `--catch-up: unknown catch-up policy "most"`},
		{[]string{"alice", "hi", "there", "--every", "1h"}, "quote a text of several words"},
	} {
		_, err := run(t, "", append([]string{"schedule", "add", "--config", cfg}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("schedule add %q: %v, want %q", tc.args, err, tc.want)
		}
	}
	if len(d.added) != 0 {
		t.Errorf("the daemon was asked: %+v", d.added)
	}
}

func TestScheduleCommands(t *testing.T) {
	d := &schedDaemon{}
	cfg := startSchedDaemon(t, d)
	sched := func(in string, args ...string) (string, error) {
		return run(t, in, append([]string{"schedule", "--config", cfg}, args...)...)
	}
	out, err := sched("", "add", "alice", "--cron", "0 8 * * 1-5", "--tz", "Europe/Berlin", "summarise my inbox")
	if err != nil || !strings.HasPrefix(out, "s-1\n") || !strings.Contains(out, "next firing 2026-12-08 08:00 CET") {
		t.Fatalf("add cron: %q, %v", out, err)
	}
	if out, err := sched("from a file\n", "add", "bob", "--every", "30m", "--catch-up", "all", "-"); err != nil || !strings.HasPrefix(out, "s-2\n") {
		t.Fatalf("add every from stdin: %q, %v", out, err)
	}
	if got := d.added[1]; got.Text != "from a file\n" || got.Every != "30m" || got.CatchUp != "all" || got.ChatID != "bob" {
		t.Fatalf("the daemon got %+v", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cron", "61 8 * * *"}, `refused: cron "61 8 * * *": end of range (61) above maximum (59)`},
		{[]string{"--cron", "0 8 * * *", "--tz", "Mars/Olympus"}, `unknown time zone "Mars/Olympus"`},
		{[]string{"--every", "5s"}, `refused: every "5s": shorter than the minimum 1m0s`},
		{[]string{"--at", "soon"}, `refused: at "soon": not a time`},
	} {
		_, err := sched("", append([]string{"add", "carol", "x"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("add %q: %v, want %q", tc.args, err, tc.want)
		}
	}
	out, err = sched("", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "WHEN", "NEXT", "cron 0 8 * * 1-5 Europe/Berlin", "every 30m", "2026-12-08 08:00 CET", "active", "summarise my inbox"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, err = sched("", "list", "--chat", "bob", "--json")
	var got []wire.Schedule
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 || got[0].ID != "s-2" {
		t.Fatalf("list --chat bob --json: %q, %v", out, err)
	}
	if out, err := sched("", "pause", "s-1"); err != nil || !strings.Contains(out, "paused: s-1") || !d.list[0].Paused {
		t.Fatalf("pause: %q, %v", out, err)
	}
	if out, _ := sched("", "list"); !strings.Contains(out, "paused") {
		t.Errorf("list after pause:\n%s", out)
	}
	if out, err := sched("", "resume", "s-1"); err != nil || !strings.Contains(out, "resumed: s-1") || d.list[0].Paused {
		t.Fatalf("resume: %q, %v", out, err)
	}
	if out, err := sched("", "rm", "s-2"); err != nil || out != "removed: s-2\n" {
		t.Fatalf("rm: %q, %v", out, err)
	}
	for _, op := range []string{"rm", "pause", "resume"} {
		if _, err := sched("", op, "s-2"); err == nil || !strings.Contains(err.Error(), `no schedule with id "s-2"`) {
			t.Errorf("%s of an unknown id: %v", op, err)
		}
	}
	if out, err := sched("", "list", "--chat", "bob"); err != nil || out != "no schedules\n" {
		t.Errorf("empty list: %q, %v", out, err)
	}
}
