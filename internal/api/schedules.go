package api

import (
	"context"

	"github.com/dispatchd/dispatch/internal/wire"
)

// Schedules:
//
//	GET    /v1/schedules[?chat=C]      the schedules, oldest first
//	POST   /v1/schedules               wire.ScheduleIn → 201 the schedule;
//	                                   400 with the reason when invalid
//	GET    /v1/schedules/{id}          one schedule; 404 unknown
//	DELETE /v1/schedules/{id}          204; 404 unknown
//	POST   /v1/schedules/{id}/pause    the schedule; 404 unknown
//	POST   /v1/schedules/{id}/resume   the schedule; 404 unknown

// SchedulesBackend keeps and fires the schedules. Its errors: a refused
// input (bad expression, zone, interval, time, catch-up policy, chat id or
// text) is a *schedule.Error (schedule.IsError; 400 with its text as the
// reason); store.ErrNotFound is an unknown id (404); anything else is the
// daemon's (a storage error: 503, as everywhere).
type SchedulesBackend interface {
	Schedules(ctx context.Context, chat string) ([]wire.Schedule, error)
	Schedule(ctx context.Context, id string) (wire.Schedule, error)
	AddSchedule(ctx context.Context, in wire.ScheduleIn) (wire.Schedule, error)
	RemoveSchedule(ctx context.Context, id string) error
	PauseSchedule(ctx context.Context, id string, paused bool) (wire.Schedule, error)
}
