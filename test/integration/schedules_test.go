package integration

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/wire"
)

// The schedule commands against the real daemon: add (refusals named,
// exit 1), list, pause, resume, rm; a one-off time a few seconds ahead
// fires as an ordinary message with the firing's client id, is answered
// by the agent, and leaves the schedule finished with its last firing.
func TestScheduleCommands(t *testing.T) {
	d := daemontest.Start(t, opts(noChecks))

	out, errOut, code := d.Run("schedule", "add", "alice", "--cron", "0 8 * * 1-5", "--tz", "Europe/Berlin", "summarise my inbox")
	cronID := strings.TrimSpace(out)
	if code != 0 || cronID == "" || strings.Contains(cronID, "\n") || !strings.Contains(errOut, "next firing") {
		t.Fatalf("schedule add --cron: exit %d, %q %q", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cron", "61 8 * * *"}, "above maximum (59)"},
		{[]string{"--cron", "0 8 * * *", "--tz", "Europe/Berln"}, `unknown time zone "Europe/Berln"`},
		{[]string{"--every", "10s"}, "shorter than the minimum"},
		{[]string{"--at", "christmas"}, "not a time"},
		{[]string{"--cron", "0 8 * * *", "--every", "1h"}, "give exactly one of --cron, --every and --at"},
	} {
		out, errOut, code := d.Run(append([]string{"schedule", "add", "alice", "x"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("schedule add %q: exit %d, %q %q; want 1 naming %q", tc.args, code, out, errOut, tc.want)
		}
	}

	list := func() string {
		t.Helper()
		out, errOut, code := d.Run("schedule", "list")
		if code != 0 {
			t.Fatalf("schedule list: exit %d, %s", code, errOut)
		}
		return out
	}
	if out := list(); !strings.Contains(out, cronID) || !strings.Contains(out, "cron 0 8 * * 1-5 Europe/Berlin") ||
		!strings.Contains(out, "active") || !strings.Contains(out, "summarise my inbox") {
		t.Errorf("schedule list:\n%s", out)
	}
	if _, errOut, code := d.Run("schedule", "pause", cronID); code != 0 {
		t.Fatalf("pause: exit %d, %s", code, errOut)
	}
	if out := list(); !strings.Contains(out, "paused") {
		t.Errorf("schedule list after pause:\n%s", out)
	}
	if _, errOut, code := d.Run("schedule", "resume", cronID); code != 0 {
		t.Fatalf("resume: exit %d, %s", code, errOut)
	}
	if out := list(); !strings.Contains(out, "active") || strings.Contains(out, "paused") {
		t.Errorf("schedule list after resume:\n%s", out)
	}

	// Once, a few seconds from now.
	at := time.Now().UTC().Truncate(time.Second).Add(3 * time.Second)
	out, errOut, code = d.Run("schedule", "add", "bob", "--at", at.Format(time.RFC3339), "remind me")
	atID := strings.TrimSpace(out)
	if code != 0 || atID == "" {
		t.Fatalf("schedule add --at: exit %d, %q %q", code, out, errOut)
	}
	var fired wire.EventsOut
	daemontest.WaitFor(t, func() bool {
		st, body := d.Get("/v1/events?" + url.Values{"chat": {"bob"}, "types": {"schedule_fired"}}.Encode())
		return st == 200 && json.Unmarshal(body, &fired) == nil && len(fired.Events) > 0
	}, 30*time.Second, "the schedule_fired event")
	ev := fired.Events[0]
	if ev.ScheduleID != atID || ev.ScheduledAt == nil || !ev.ScheduledAt.Equal(at) || ev.MessageID == "" {
		t.Fatalf("schedule_fired = %+v, want schedule %s at %s", ev, atID, at)
	}
	m := d.WaitMessage(ev.MessageID, "done", 30*time.Second)
	if want := "sched:" + atID + ":" + at.Format(time.RFC3339); m.ClientID != want || m.ChatID != "bob" || m.Reply == "" {
		t.Errorf("the fired message = %+v, want client id %s and a reply", m, want)
	}
	out, errOut, code = d.Run("schedule", "list", "--chat", "bob", "--json")
	var ss []wire.Schedule
	if code != 0 || json.Unmarshal([]byte(out), &ss) != nil || len(ss) != 1 {
		t.Fatalf("schedule list --chat bob --json: exit %d, %q %q", code, out, errOut)
	}
	if s := ss[0]; s.ID != atID || !s.Finished || s.Next != "" || s.LastFired == "" {
		t.Errorf("the fired one-off schedule = %+v, want finished with last_fired", s)
	}

	for _, id := range []string{cronID, atID} {
		if out, errOut, code := d.Run("schedule", "rm", id); code != 0 || !strings.Contains(out, "removed: "+id) {
			t.Errorf("rm %s: exit %d, %q %q", id, code, out, errOut)
		}
	}
	for _, op := range []string{"rm", "pause", "resume"} {
		if _, errOut, code := d.Run("schedule", op, cronID); code != 1 || !strings.Contains(errOut, "no schedule with id") {
			t.Errorf("%s of a removed schedule: exit %d, %q", op, code, errOut)
		}
	}
	if out := list(); strings.TrimSpace(out) != "no schedules" {
		t.Errorf("list after rm: %q", out)
	}
}
