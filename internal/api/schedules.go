package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
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

// maxSchedExpr bounds a schedule's expression and zone: the longest real
// ones ("America/Argentina/ComodRivadavia", a cron list of every minute)
// are far below it.
const maxSchedExpr = 512

func registerSchedules(mux *http.ServeMux, h *handler) {
	mux.HandleFunc("GET /v1/schedules", h.schedules)
	mux.HandleFunc("POST /v1/schedules", h.addSchedule)
	mux.HandleFunc("GET /v1/schedules/{id}", h.schedule)
	mux.HandleFunc("DELETE /v1/schedules/{id}", h.removeSchedule)
	mux.HandleFunc("POST /v1/schedules/{id}/pause", func(w http.ResponseWriter, r *http.Request) { h.pauseSchedule(w, r, true) })
	mux.HandleFunc("POST /v1/schedules/{id}/resume", func(w http.ResponseWriter, r *http.Request) { h.pauseSchedule(w, r, false) })
}

func (h *handler) schedules(w http.ResponseWriter, r *http.Request) {
	chat := r.URL.Query().Get("chat")
	if chat != "" {
		if err := ValidChatID(chat); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	ss, err := h.b.Schedules(r.Context(), chat)
	if err != nil {
		h.scheduleFail(w, "list schedules", "", err)
		return
	}
	if ss == nil {
		ss = []wire.Schedule{}
	}
	writeJSON(w, http.StatusOK, wire.SchedulesOut{Schedules: ss})
}

func (h *handler) schedule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, err := h.b.Schedule(r.Context(), id)
	if err != nil {
		h.scheduleFail(w, "get schedule", id, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *handler) addSchedule(w http.ResponseWriter, r *http.Request) {
	var in wire.ScheduleIn
	if !decode(w, r, &in, maxBody) {
		return
	}
	if code, msg := scheduleInProblem(in); code != 0 {
		writeError(w, code, msg)
		return
	}
	s, err := h.b.AddSchedule(r.Context(), in)
	if err != nil {
		h.scheduleFail(w, "add schedule", "", err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

func (h *handler) removeSchedule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := h.b.RemoveSchedule(r.Context(), id); err != nil {
		h.scheduleFail(w, "remove schedule", id, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) pauseSchedule(w http.ResponseWriter, r *http.Request, paused bool) {
	id := r.PathValue("id")
	what := "resume schedule"
	if paused {
		what = "pause schedule"
	}
	s, err := h.b.PauseSchedule(r.Context(), id, paused)
	if err != nil {
		h.scheduleFail(w, what, id, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// scheduleInProblem checks what does not need the schedule rules: the
// chat id, the text, exactly one kind, the catch-up policy, and the
// lengths. It returns the status and the reason, or 0. The expression,
// the zone and the time are the backend's to judge (a *schedule.Error).
func scheduleInProblem(in wire.ScheduleIn) (int, string) {
	if err := ValidChatID(in.ChatID); err != nil {
		return http.StatusBadRequest, err.Error()
	}
	switch {
	case in.Text == "":
		return http.StatusBadRequest, "text is required"
	case len(in.Text) > MaxText:
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("text is %d bytes; the limit is %d", len(in.Text), MaxText)
	case !utf8.ValidString(in.Text):
		return http.StatusBadRequest, "text is not valid UTF-8"
	}
	kinds := 0
	for _, f := range []struct{ name, v string }{{"cron", in.Cron}, {"every", in.Every}, {"at", in.At}, {"tz", in.TZ}} {
		if f.v == "" {
			continue
		}
		if f.name != "tz" {
			kinds++
		}
		if len(f.v) > maxSchedExpr {
			return http.StatusBadRequest, fmt.Sprintf("%s is %d bytes; the limit is %d", f.name, len(f.v), maxSchedExpr)
		}
		if !utf8.ValidString(f.v) {
			return http.StatusBadRequest, f.name + " is not valid UTF-8"
		}
	}
	if kinds != 1 {
		return http.StatusBadRequest, "give exactly one of cron, every and at"
	}
	if _, err := schedule.ParsePolicy(in.CatchUp); err != nil {
		return http.StatusBadRequest, "catch_up: " + err.Error()
	}
	return 0, ""
}

// scheduleFail maps a schedules backend error: a refused input is 400
// with its reason, an unknown id 404, the rest as every route does.
func (h *handler) scheduleFail(w http.ResponseWriter, what, id string, err error) {
	if e, ok := schedule.IsError(err); ok {
		writeError(w, http.StatusBadRequest, e.Error())
		return
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no schedule "+quoteID(id))
	default:
		h.fail(w, what, err)
	}
}
