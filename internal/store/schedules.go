package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/schedule"
)

// Schedules: texts sent into a chat at given times (internal/schedule holds
// their rules). A schedule's row keeps its spec and its progress: Through,
// the latest scheduled time already dealt with (fired or reported missed).
//
// A firing is one transaction (FireSchedule): it reads the schedule's row,
// holding it, decides by schedule.Due what is due after Through, accepts
// the firings' messages (each with the client id schedule.ClientID, so a
// second copy is refused by the queue's (chat, client id) uniqueness),
// appends their schedule_fired and schedule_missed events and moves
// Through up. A daemon killed at any point has either done all of it or
// none; two nodes firing the same schedule at once are ordered by the
// row's lock, and the second finds nothing due.

// ScheduleRecord is a stored schedule.
type ScheduleRecord struct {
	ID, ChatID string
	Spec       schedule.Spec
	Text       string
	CatchUp    schedule.Policy
	Paused     bool
	// Through is the latest scheduled time dealt with, fired or reported
	// missed (zero: none yet, which counts as Spec.Created).
	Through time.Time
	// LastFired is the scheduled time of the latest firing accepted (zero:
	// none yet).
	LastFired time.Time
	// Finished: the schedule has no more firings (a one-off time dealt
	// with).
	Finished bool
	Updated  time.Time
}

// ScheduleTx is a write transaction's one-query operations for schedules.
type ScheduleTx interface {
	// InsertSchedule stores the new schedule r; false: its id is taken.
	InsertSchedule(ctx context.Context, r ScheduleRecord, now int64) (bool, error)
	// ScheduleForUpdate returns schedule id (ErrNotFound), holding its row
	// until the transaction ends.
	ScheduleForUpdate(ctx context.Context, id string) (ScheduleRecord, error)
	// UpdateSchedule records r's Paused, Through, LastFired and Finished.
	UpdateSchedule(ctx context.Context, r ScheduleRecord, now int64) error
	// DeleteSchedule deletes schedule id; false: none.
	DeleteSchedule(ctx context.Context, id string) (bool, error)
}

// ScheduleReader is the dialect's one-query reads for schedules.
type ScheduleReader interface {
	// ScheduleByID returns schedule id (ErrNotFound).
	ScheduleByID(ctx context.Context, id string) (ScheduleRecord, error)
	// ScheduleList returns chat's schedules (every chat's when empty) by
	// creation time and id.
	ScheduleList(ctx context.Context, chat string) ([]ScheduleRecord, error)
}

// ScheduleBackend is the schedules' part of Backend.
type ScheduleBackend interface {
	CreateSchedule(ctx context.Context, r ScheduleRecord) error
	Schedule(ctx context.Context, id string) (ScheduleRecord, error)
	Schedules(ctx context.Context, chat string) ([]ScheduleRecord, error)
	RemoveSchedule(ctx context.Context, id string) error
	PauseSchedule(ctx context.Context, id string, paused bool, now time.Time) (ScheduleRecord, error)
	FireSchedule(ctx context.Context, id string, now time.Time, window time.Duration) (Fired, error)
}

// Fired is what one FireSchedule did.
type Fired struct {
	// Schedule is the schedule's row after the firing (Finished, Paused:
	// nothing more to fire). Gone: it was removed.
	Schedule ScheduleRecord
	Gone     bool
	// Plan is what was due (empty when nothing was).
	Plan schedule.Plan
	// Messages are the ids of the messages of Plan.Fire, in its order;
	// New counts those accepted now (not found already there).
	Messages []string
	New      int
}

// ErrScheduleTaken is a CreateSchedule whose id is already in use.
var ErrScheduleTaken = errors.New("store: schedule id taken")

// CreateSchedule stores the new schedule r (its spec already checked by
// schedule.Parse).
func (s *Store[T]) CreateSchedule(ctx context.Context, r ScheduleRecord) error {
	if r.ID == "" || r.ChatID == "" || r.Spec.Created.IsZero() {
		return errors.New("store: create schedule: empty id, chat or creation time")
	}
	now := Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		ok, err := tx.InsertSchedule(ctx, r, now)
		if err == nil && !ok {
			err = ErrScheduleTaken
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create schedule %s: %w", r.ID, err)
	}
	return nil
}

// Schedule returns schedule id (ErrNotFound).
func (s *Store[T]) Schedule(ctx context.Context, id string) (ScheduleRecord, error) {
	r, err := s.d.ScheduleByID(ctx, id)
	if err != nil {
		return r, fmt.Errorf("store: schedule %s: %w", id, err)
	}
	return r, nil
}

// Schedules returns chat's schedules (every chat's when empty), oldest
// first.
func (s *Store[T]) Schedules(ctx context.Context, chat string) ([]ScheduleRecord, error) {
	rs, err := s.d.ScheduleList(ctx, chat)
	if err != nil {
		return nil, fmt.Errorf("store: schedules: %w", err)
	}
	return rs, nil
}

// RemoveSchedule deletes schedule id (ErrNotFound). Its messages already
// accepted stay in the queue.
func (s *Store[T]) RemoveSchedule(ctx context.Context, id string) error {
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		ok, err := tx.DeleteSchedule(ctx, id)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: remove schedule %s: %w", id, err)
	}
	return nil
}

// PauseSchedule pauses (paused true) or resumes schedule id
// (ErrNotFound) and returns it. A paused schedule fires nothing. Resuming
// reports the firings that fell during the pause in one schedule_missed
// event (reason paused) and moves Through past them, in the same commit:
// they are not caught up. Pausing a paused schedule, or resuming a running
// one, changes nothing.
func (s *Store[T]) PauseSchedule(ctx context.Context, id string, paused bool, now time.Time) (ScheduleRecord, error) {
	var out ScheduleRecord
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		r, err := tx.ScheduleForUpdate(ctx, id)
		if err != nil {
			return err
		}
		out = r
		if r.Paused == paused {
			return nil
		}
		r.Paused = paused
		if !paused && !r.Finished {
			sc, err := schedule.Parse(r.Spec)
			if err != nil {
				return err
			}
			p := schedule.Skip(sc, r.Through, now)
			if ev, ok := schedule.MissedEvent(r.ID, r.ChatID, p.Missed); ok {
				if err := s.appendEvent(ctx, tx, &ev); err != nil {
					return err
				}
				r.Through = p.Through
			}
			r.Finished = !p.HasNext
		}
		out = r
		return tx.UpdateSchedule(ctx, r, Nanos(s.clk.Now()))
	})
	if err != nil {
		return ScheduleRecord{}, fmt.Errorf("store: pause schedule %s: %w", id, err)
	}
	return out, nil
}

// FireSchedule fires what of schedule id is due at now, by schedule.Due
// with the schedule's catch-up policy and window: in one durable commit it
// accepts each firing's message (client id schedule.ClientID; one already
// there is found, not doubled), appends the schedule_missed event of what
// is not fired and a schedule_fired event per firing, and moves Through
// up. A paused or finished schedule fires nothing; a removed one is Gone.
// Nothing due changes nothing.
func (s *Store[T]) FireSchedule(ctx context.Context, id string, now time.Time, window time.Duration) (Fired, error) {
	var out Fired
	at := Nanos(s.clk.Now())
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		out = Fired{}
		r, err := tx.ScheduleForUpdate(ctx, id)
		if errors.Is(err, ErrNotFound) {
			out.Gone = true
			return nil
		}
		if err != nil {
			return err
		}
		out.Schedule = r
		if r.Paused || r.Finished {
			return nil
		}
		sc, err := schedule.Parse(r.Spec)
		if err != nil {
			return err
		}
		p := schedule.Due(sc, r.Through, now, schedule.CatchUp{Policy: r.CatchUp, Window: window})
		out.Plan = p
		if p.Through.IsZero() {
			return nil
		}
		if ev, ok := schedule.MissedEvent(r.ID, r.ChatID, p.Missed); ok {
			if err := s.appendEvent(ctx, tx, &ev); err != nil {
				return err
			}
		}
		if len(p.Fire) > 0 {
			if err := tx.LockChat(ctx, r.ChatID); err != nil {
				return err
			}
		}
		for _, f := range p.Fire {
			m := NewMessage{ID: NewMessageID(), ChatID: r.ChatID, Text: r.Text,
				ClientID: schedule.ClientID(r.ID, f.At), At: at}
			mid, dup, err := acceptInTx(ctx, tx, m)
			if err != nil {
				return err
			}
			if !dup {
				out.New++
			}
			out.Messages = append(out.Messages, mid)
			ev := schedule.FiredEvent(r.ID, r.ChatID, mid, f)
			if err := s.appendEvent(ctx, tx, &ev); err != nil {
				return err
			}
			r.LastFired = f.At
		}
		r.Through = p.Through
		r.Finished = !p.HasNext
		out.Schedule = r
		return tx.UpdateSchedule(ctx, r, at)
	})
	if err != nil {
		return Fired{}, fmt.Errorf("store: fire schedule %s: %w", id, err)
	}
	if out.New > 0 {
		s.wake(ctx, out.Schedule.ChatID)
	}
	return out, nil
}

// acceptInTx stores m inside a write whose transaction already holds
// m's chat (LockChat), or finds the message with its (chat, client id):
// the accept of Accept and AcceptFromChannel, for a write that commits
// more with it.
func acceptInTx[T Tx](ctx context.Context, tx T, m NewMessage) (id string, dup bool, err error) {
	ok, err := tx.InsertMessage(ctx, m)
	if err != nil {
		return "", false, err
	}
	if ok {
		return m.ID, false, nil
	}
	id, _, err = tx.MessageByClient(ctx, m.ChatID, m.ClientID)
	return id, true, err
}

// ScheduleColumns are the columns ScanSchedule reads, in its order.
const ScheduleColumns = `id, chat_id, kind, expr, tz, created_at, text, catch_up, paused, through, last_fired, finished, updated_at`

// ScanSchedule reads a row of ScheduleColumns.
func ScanSchedule(row Scanner) (ScheduleRecord, error) {
	var (
		r                                ScheduleRecord
		kind, policy                     string
		created, through, fired, updated int64
	)
	err := row.Scan(&r.ID, &r.ChatID, &kind, &r.Spec.Expr, &r.Spec.TZ, &created, &r.Text, &policy,
		&r.Paused, &through, &fired, &r.Finished, &updated)
	r.Spec.Kind, r.CatchUp = schedule.Kind(kind), schedule.Policy(policy)
	r.Spec.Created, r.Through, r.LastFired, r.Updated = FromNanos(created), FromNanos(through), FromNanos(fired), FromNanos(updated)
	return r, err
}

// ScheduleArgs are r's values for an insert, in ScheduleColumns' order.
func ScheduleArgs(r ScheduleRecord, now int64) []any {
	return []any{r.ID, r.ChatID, string(r.Spec.Kind), r.Spec.Expr, r.Spec.TZ, Nanos(r.Spec.Created), r.Text,
		string(r.CatchUp), r.Paused, Nanos(r.Through), Nanos(r.LastFired), r.Finished, now}
}
