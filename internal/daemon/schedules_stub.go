package daemon

import (
	"context"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Until the daemon keeps schedules, its schedule routes answer 503
// "schedules not available". The schedule store and firing loop replace
// this file.

func (backend) Schedules(context.Context, string) ([]wire.Schedule, error) {
	return nil, api.ErrSchedulesUnavailable
}

func (backend) Schedule(context.Context, string) (wire.Schedule, error) {
	return wire.Schedule{}, api.ErrSchedulesUnavailable
}

func (backend) AddSchedule(context.Context, wire.ScheduleIn) (wire.Schedule, error) {
	return wire.Schedule{}, api.ErrSchedulesUnavailable
}

func (backend) RemoveSchedule(context.Context, string) error {
	return api.ErrSchedulesUnavailable
}

func (backend) PauseSchedule(context.Context, string, bool) (wire.Schedule, error) {
	return wire.Schedule{}, api.ErrSchedulesUnavailable
}
