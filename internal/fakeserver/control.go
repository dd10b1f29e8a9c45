package fakeserver

import (
	"net/http"
	"time"
)

// HandleMode registers a fake's mode control endpoints on mux:
//
//	GET  PREFIX mode                    {"mode":"…"}
//	POST PREFIX mode?m=MODE&for=5s      switch; for= switches back after
//
// writeJSON writes an answer the fake's way; mode returns the current mode,
// parse names one, and switchMode switches to m and back after d if d > 0,
// calling announce while the listener is still (or already) up, so that the
// answer to this very request is neither lost nor early.
func HandleMode[M ~string](mux *http.ServeMux, prefix string, writeJSON func(w http.ResponseWriter, status int, v any),
	mode func() M, parse func(string) (M, error), switchMode func(m M, d time.Duration, announce func())) {
	mux.HandleFunc("GET "+prefix+"mode", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]M{"mode": mode()})
	})
	mux.HandleFunc("POST "+prefix+"mode", func(w http.ResponseWriter, r *http.Request) {
		m, err := parse(r.FormValue("m"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		var d time.Duration
		if f := r.FormValue("for"); f != "" {
			if d, err = time.ParseDuration(f); err != nil || d <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad duration for=: " + f})
				return
			}
		}
		// Answer while the listener is up: switching to a refusing mode
		// closes the very connection this request came on.
		switchMode(m, d, func() {
			writeJSON(w, http.StatusOK, map[string]M{"mode": m})
			http.NewResponseController(w).Flush()
		})
	})
}
