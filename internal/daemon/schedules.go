package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/scheduler"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// schedules is the daemon's part of schedules: the API's backend (kept in
// the store) and the loop that fires them (internal/scheduler). With
// PostgreSQL the loop runs on the one node holding the schedules role
// and reloads every schedule every clusterResync, so a schedule added
// through another node is seen.
type schedules struct {
	st   store.Backend
	loop *scheduler.Scheduler
	clk  clock.Clock
}

// clusterResync is how often the node firing schedules reads them all
// again (several nodes).
const clusterResync = 5 * time.Second

var _ api.SchedulesBackend = backend{}

func newSchedules(cfg config.Config, st store.Backend, accepted func(chat string), log *slog.Logger) *schedules {
	sc := scheduler.Config{Window: cfg.Schedules.CatchUpWindow, Accepted: accepted, Log: log, Clock: clock.Real{}}
	if cfg.Store.Postgres() {
		sc.Resync = clusterResync
	}
	return &schedules{st: st, loop: scheduler.New(st, sc), clk: clock.Real{}}
}

// refuse is an input refused, as the API's 400.
func refuse(format string, a ...any) error {
	return &schedule.Error{Reason: fmt.Sprintf(format, a...)}
}

// newScheduleID is a short random id: "s_" and 10 base-32 characters.
func newScheduleID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [10]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "s_" + string(b[:])
}

// add checks in and stores it as a new schedule.
func (s *schedules) add(ctx context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	if err := wire.ValidChatID(in.ChatID); err != nil {
		return wire.Schedule{}, refuse("%v", err)
	}
	switch {
	case strings.TrimSpace(in.Text) == "":
		return wire.Schedule{}, refuse("text is empty")
	case len(in.Text) > wire.MaxText:
		return wire.Schedule{}, refuse("text is %d bytes; the limit is %d", len(in.Text), wire.MaxText)
	}
	var sp schedule.Spec
	n := 0
	for _, k := range []struct {
		kind schedule.Kind
		expr string
	}{{schedule.Cron, in.Cron}, {schedule.Every, in.Every}, {schedule.At, in.At}} {
		if k.expr != "" {
			sp.Kind, sp.Expr = k.kind, k.expr
			n++
		}
	}
	if n != 1 {
		return wire.Schedule{}, refuse("give exactly one of cron, every and at (got %d)", n)
	}
	policy, err := schedule.ParsePolicy(in.CatchUp)
	if err != nil {
		return wire.Schedule{}, refuse("catch_up: %v", err)
	}
	now := s.clk.Now().UTC()
	sp.TZ, sp.Created = in.TZ, now
	sc, err := schedule.Parse(sp)
	if err != nil {
		return wire.Schedule{}, err
	}
	if _, ok := sc.Next(now); !ok {
		return wire.Schedule{}, &schedule.Error{Spec: sp, Reason: "the time has passed"}
	}
	r := store.ScheduleRecord{ChatID: in.ChatID, Spec: sc.Spec(), Text: in.Text, CatchUp: policy}
	for range 3 {
		r.ID = newScheduleID()
		err = s.st.CreateSchedule(ctx, r)
		if !errors.Is(err, store.ErrScheduleTaken) {
			break
		}
	}
	if err != nil {
		return wire.Schedule{}, err
	}
	s.loop.Changed(r.ID)
	return wireSchedule(r), nil
}

// wireSchedule is r as the API shows it.
func wireSchedule(r store.ScheduleRecord) wire.Schedule {
	w := wire.Schedule{ID: r.ID, ChatID: r.ChatID, Kind: string(r.Spec.Kind), Expr: r.Spec.Expr, TZ: r.Spec.TZ,
		Text: r.Text, CatchUp: string(r.CatchUp), Paused: r.Paused, Finished: r.Finished,
		CreatedAt: rfc3339(r.Spec.Created), LastFired: rfc3339(r.LastFired)}
	if !r.Paused && !r.Finished {
		if sc, err := schedule.Parse(r.Spec); err == nil {
			after := r.Through
			if after.Before(r.Spec.Created) {
				after = r.Spec.Created
			}
			if f, ok := sc.Next(after); ok {
				w.Next = rfc3339(f.At)
			}
		}
	}
	return w
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// The API's schedules (api.SchedulesBackend).

func (b backend) Schedules(ctx context.Context, chat string) ([]wire.Schedule, error) {
	rs, err := b.st.Schedules(ctx, chat)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Schedule, 0, len(rs))
	for _, r := range rs {
		out = append(out, wireSchedule(r))
	}
	return out, nil
}

func (b backend) Schedule(ctx context.Context, id string) (wire.Schedule, error) {
	r, err := b.st.Schedule(ctx, id)
	if err != nil {
		return wire.Schedule{}, err
	}
	return wireSchedule(r), nil
}

func (b backend) AddSchedule(ctx context.Context, in wire.ScheduleIn) (wire.Schedule, error) {
	return b.sched.add(ctx, in)
}

func (b backend) RemoveSchedule(ctx context.Context, id string) error {
	if err := b.st.RemoveSchedule(ctx, id); err != nil {
		return err
	}
	b.sched.loop.Changed(id)
	return nil
}

func (b backend) PauseSchedule(ctx context.Context, id string, paused bool) (wire.Schedule, error) {
	r, err := b.st.PauseSchedule(ctx, id, paused, b.sched.clk.Now())
	if err != nil {
		return wire.Schedule{}, err
	}
	b.sched.loop.Changed(id)
	return wireSchedule(r), nil
}
