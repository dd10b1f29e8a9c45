package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/wire"
)

func newTestSchedules(t *testing.T, now time.Time) (backend, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(now)
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sc := newSchedules(config.Default(), st, nil, nil)
	sc.clk = clk
	return backend{st: st, sched: sc}, clk
}

// TestAddScheduleRefusals: every bad input is refused as a
// *schedule.Error naming the reason (the API's 400), and nothing is
// stored.
func TestAddScheduleRefusals(t *testing.T) {
	now := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	b, _ := newTestSchedules(t, now)
	tests := []struct {
		name   string
		in     wire.ScheduleIn
		reason string
	}{
		{"no chat", wire.ScheduleIn{Text: "x", Cron: "0 8 * * *"}, "chat_id"},
		{"bad chat", wire.ScheduleIn{ChatID: "a\nb", Text: "x", Cron: "0 8 * * *"}, "chat_id"},
		{"empty text", wire.ScheduleIn{ChatID: "c", Text: " ", Cron: "0 8 * * *"}, "text is empty"},
		{"text too long", wire.ScheduleIn{ChatID: "c", Text: strings.Repeat("x", wire.MaxText+1), Cron: "0 8 * * *"}, "the limit is"},
		{"no kind", wire.ScheduleIn{ChatID: "c", Text: "x"}, "exactly one of cron, every and at"},
		{"two kinds", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 8 * * *", Every: "1h"}, "exactly one"},
		{"cron out of range", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "61 8 * * *"}, "above maximum (59)"},
		{"cron with seconds", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 0 8 * * *"}, "expected exactly 5 fields"},
		{"cron never", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 0 31 2 *"}, "never fires"},
		{"unknown zone", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 8 * * *", TZ: "Mars/Olympus"}, `unknown time zone "Mars/Olympus"`},
		{"Local", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 8 * * *", TZ: "Local"}, `"Local" is not accepted`},
		{"short interval", wire.ScheduleIn{ChatID: "c", Text: "x", Every: "30s"}, "shorter than the minimum"},
		{"bad interval", wire.ScheduleIn{ChatID: "c", Text: "x", Every: "1d"}, "not a duration"},
		{"bad time", wire.ScheduleIn{ChatID: "c", Text: "x", At: "tomorrow"}, "not a time"},
		{"past time", wire.ScheduleIn{ChatID: "c", Text: "x", At: "2026-12-07T20:59"}, "the time has passed"},
		{"bad policy", wire.ScheduleIn{ChatID: "c", Text: "x", Cron: "0 8 * * *", CatchUp: "some"}, "unknown catch-up policy"},
	}
	for _, tc := range tests {
		_, err := b.AddSchedule(context.Background(), tc.in)
		e, ok := schedule.IsError(err)
		if !ok || !strings.Contains(e.Error(), tc.reason) {
			t.Errorf("%s: %v, want a *schedule.Error with %q", tc.name, err, tc.reason)
		}
	}
	if all, err := b.Schedules(context.Background(), ""); err != nil || len(all) != 0 {
		t.Fatalf("stored %+v, %v", all, err)
	}
}

// TestScheduleBackend: a schedule added, shown, paused, resumed and
// removed through the API's backend.
func TestScheduleBackend(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 21, 0, 5, 0, time.UTC)
	b, clk := newTestSchedules(t, now)
	s, err := b.AddSchedule(ctx, wire.ScheduleIn{ChatID: "c", Text: "summarise", Cron: "0 8 * * 1-5", TZ: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Schedule{ID: s.ID, ChatID: "c", Kind: "cron", Expr: "0 8 * * 1-5", TZ: "Europe/Berlin", Text: "summarise",
		CatchUp: "one", CreatedAt: "2026-12-07T21:00:05Z", Next: "2026-12-08T07:00:00Z"}
	if !strings.HasPrefix(s.ID, "s_") || len(s.ID) != 12 || s != want {
		t.Fatalf("added %+v\nwant %+v", s, want)
	}
	if got, err := b.Schedule(ctx, s.ID); err != nil || got != want {
		t.Fatalf("Schedule = %+v, %v", got, err)
	}
	if _, err := b.Schedule(ctx, "s_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown = %v", err)
	}
	p, err := b.PauseSchedule(ctx, s.ID, true)
	if err != nil || !p.Paused || p.Next != "" {
		t.Fatalf("paused %+v, %v", p, err)
	}
	clk.Set(time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC))
	r, err := b.PauseSchedule(ctx, s.ID, false)
	if err != nil || r.Paused || r.Next != "2026-12-10T07:00:00Z" || r.LastFired != "" {
		t.Fatalf("resumed %+v, %v", r, err)
	}
	if l, err := b.Schedules(ctx, "c"); err != nil || len(l) != 1 {
		t.Fatalf("list %+v, %v", l, err)
	}
	if l, err := b.Schedules(ctx, "other"); err != nil || len(l) != 0 {
		t.Fatalf("list other %+v, %v", l, err)
	}
	if err := b.RemoveSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveSchedule(ctx, s.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("remove twice = %v", err)
	}
}
