package fakeslack

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeserver"
)

// ControlPrefix is the path prefix of the control endpoints.
const ControlPrefix = "/_control/"

// ControlHandler returns the HTTP control interface, for shells and test
// processes that cannot call the Go methods. Bodies are JSON.
//
//	POST /_control/message     {"user":"U1","text":"hi"}; optional "name", "channel":"C1",
//	                           "mention":true, "thread_ts":"…",
//	                           "files":[{"name":"a.txt","mimetype":"text/plain","data":BASE64}]
//	                           → {"channel":…,"ts":…,"event_ids":[…],"envelope_ids":[…]}
//	POST /_control/press       {"channel":"D1","ts":"…","user":"U1","action_id":"perm:allow:r1"}
//	                           → {"envelope_id":…}
//	POST /_control/ratelimit   {"method":"chat.postMessage","n":2,"retry_after":3}
//	                           or {"method":"chat.postMessage","for":"30s"}; n 0 and no for: until cleared
//	DELETE /_control/ratelimit lifts every rate limit
//	POST /_control/fail        {"method":"chat.postMessage","n":1,"error":"channel_not_found"}
//	POST /_control/disconnect  {"reason":"refresh_requested"} (or "warning", "link_disabled")
//	POST /_control/drop        cuts every Socket Mode connection
//	POST /_control/hold-acks   {"on":true}
//	GET  /_control/mode        {"mode":"up"}
//	POST /_control/mode?m=refuse&for=5s   up, refuse or hang; for= switches back after
//	GET  /_control/channels    every channel known
//	GET  /_control/channels/ID {"channel":…,"messages":[…],"ops":[…],"ephemerals":[…]}
//	GET  /_control/uploads     the bot's uploads
//	GET  /_control/envelopes   every envelope and whether it was acknowledged
//	GET  /_control/acks        every acknowledgement received
//	GET  /_control/calls       every Web API call answered
//	GET  /_control/state       {"mode":…,"connections":N,"hold_acks":…}
//
// When served on the API listener (EnableControl), ModeRefuse refuses the
// control endpoints too; use for=DURATION or a listener of their own.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ControlPrefix+"message", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			User     string `json:"user"`
			Name     string `json:"name"`
			Channel  string `json:"channel"`
			Text     string `json:"text"`
			Mention  bool   `json:"mention"`
			ThreadTS string `json:"thread_ts"`
			Files    []struct {
				Name     string `json:"name"`
				Mimetype string `json:"mimetype"`
				Data     []byte `json:"data"`
			} `json:"files"`
		}
		if !decode(w, r, &req) {
			return
		}
		in := Incoming{User: req.User, Name: req.Name, Channel: req.Channel, Text: req.Text, Mention: req.Mention, ThreadTS: req.ThreadTS}
		for _, f := range req.Files {
			in.Files = append(in.Files, FileIn{Name: f.Name, Mimetype: f.Mimetype, Data: f.Data})
		}
		p, err := s.Post(in)
		if err != nil {
			controlError(w, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST "+ControlPrefix+"press", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Channel  string `json:"channel"`
			TS       string `json:"ts"`
			User     string `json:"user"`
			ActionID string `json:"action_id"`
		}
		if !decode(w, r, &req) {
			return
		}
		id, err := s.Press(req.Channel, req.TS, req.User, req.ActionID)
		if err != nil {
			controlError(w, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"envelope_id": id})
	})
	mux.HandleFunc("POST "+ControlPrefix+"ratelimit", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method     string `json:"method"`
			N          int    `json:"n"`
			RetryAfter int    `json:"retry_after"`
			For        string `json:"for"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.For != "" {
			d, err := time.ParseDuration(req.For)
			if err != nil || d <= 0 {
				controlError(w, "bad duration for: "+req.For)
				return
			}
			s.RateLimitFor(req.Method, d)
		} else {
			s.RateLimit(req.Method, req.N, req.RetryAfter)
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("DELETE "+ControlPrefix+"ratelimit", func(w http.ResponseWriter, r *http.Request) {
		s.ClearRateLimits()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST "+ControlPrefix+"fail", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method string `json:"method"`
			N      int    `json:"n"`
			Error  string `json:"error"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.N <= 0 || req.Method == "" || req.Error == "" {
			controlError(w, "method, a positive n and error are required")
			return
		}
		s.FailNext(req.Method, req.N, req.Error)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST "+ControlPrefix+"disconnect", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Reason string `json:"reason"`
		}
		if !decode(w, r, &req) {
			return
		}
		switch req.Reason {
		case ReasonWarning, ReasonRefreshRequested, ReasonLinkDisabled:
		default:
			controlError(w, "reason must be warning, refresh_requested or link_disabled")
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"connections": s.Disconnect(req.Reason)})
	})
	mux.HandleFunc("POST "+ControlPrefix+"drop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"connections": s.Drop()})
	})
	mux.HandleFunc("POST "+ControlPrefix+"hold-acks", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			On bool `json:"on"`
		}
		if !decode(w, r, &req) {
			return
		}
		s.HoldAcks(req.On)
		writeJSON(w, http.StatusOK, map[string]bool{"hold_acks": req.On})
	})
	fakeserver.HandleMode(mux, ControlPrefix, writeJSON, s.Mode, ParseMode, func(m Mode, d time.Duration, announce func()) {
		s.switchMode(m, d, 0, announce)
	})
	mux.HandleFunc("GET "+ControlPrefix+"state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		st := map[string]any{"mode": s.mode, "connections": len(s.conns), "hold_acks": s.holdAcks}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+ControlPrefix+"channels", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Channels()))
	})
	mux.HandleFunc("GET "+ControlPrefix+"channels/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		var info *Channel
		for _, c := range s.Channels() {
			if c.ID == id {
				info = &c
			}
		}
		if info == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such channel"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"channel": info, "messages": nonNil(s.Messages(id)), "ops": nonNil(s.Ops(id)), "ephemerals": nonNil(s.Ephemerals(id))})
	})
	mux.HandleFunc("GET "+ControlPrefix+"uploads", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Uploads()))
	})
	mux.HandleFunc("GET "+ControlPrefix+"envelopes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Envelopes()))
	})
	mux.HandleFunc("GET "+ControlPrefix+"acks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Acks()))
	})
	mux.HandleFunc("GET "+ControlPrefix+"calls", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Calls()))
	})
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		controlError(w, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}
