package fakeapi

import (
	"encoding/json"
	"net/http"
	"time"
)

// ControlPrefix is the path prefix of the control endpoints.
const ControlPrefix = "/_control/"

// ControlHandler returns the HTTP control interface, for shells and test
// processes that cannot call the Go API:
//
//	GET  /_control/mode                    {"mode":"ok"}
//	POST /_control/mode?m=529              switch mode
//	POST /_control/mode?m=refuse&for=3s    switch, and back to the previous mode after 3s
//	POST /_control/slow?d=5s               set the ModeSlow delay
//	POST /_control/tool_use?name=Bash&input={"command":"touch x"}
//	                                       the next answer calls that tool (QueueToolUse)
//	GET  /_control/requests                recorded POST /v1/messages as a JSON array
//	GET  /_control/requests?all=1          every recorded request
//
// When served on the API listener (EnableControl), ModeRefuse also refuses
// the control endpoints; use for=DURATION or a separate listener to leave it.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ControlPrefix+"mode", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]Mode{"mode": s.Mode()})
	})
	mux.HandleFunc("POST "+ControlPrefix+"mode", func(w http.ResponseWriter, r *http.Request) {
		m, err := ParseMode(r.FormValue("m"))
		if err != nil {
			controlError(w, err.Error())
			return
		}
		var d time.Duration
		if f := r.FormValue("for"); f != "" {
			if d, err = time.ParseDuration(f); err != nil || d <= 0 {
				controlError(w, "bad duration for=: "+f)
				return
			}
		}
		// Answer while the listener is up: switching to ModeRefuse closes
		// the very connection this request came on.
		s.switchMode(m, d, 0, func() {
			writeJSON(w, http.StatusOK, map[string]Mode{"mode": m})
			http.NewResponseController(w).Flush()
		})
	})
	mux.HandleFunc("POST "+ControlPrefix+"slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.FormValue("d"))
		if err != nil || d < 0 {
			controlError(w, "bad duration d=: "+r.FormValue("d"))
			return
		}
		s.SetSlow(d)
		writeJSON(w, http.StatusOK, map[string]string{"slow": d.String()})
	})
	mux.HandleFunc("POST "+ControlPrefix+"tool_use", func(w http.ResponseWriter, r *http.Request) {
		name, input := r.FormValue("name"), r.FormValue("input")
		if input == "" {
			input = "{}"
		}
		var obj map[string]any
		if name == "" || json.Unmarshal([]byte(input), &obj) != nil {
			controlError(w, "want name=TOOL and input={JSON object}")
			return
		}
		s.QueueToolUse(ToolUse{Name: name, Input: json.RawMessage(input)})
		writeJSON(w, http.StatusOK, map[string]string{"queued": name})
	})
	mux.HandleFunc("GET "+ControlPrefix+"requests", func(w http.ResponseWriter, r *http.Request) {
		recs := s.Requests()
		if r.FormValue("all") != "" {
			recs = s.AllRequests()
		}
		if recs == nil {
			recs = []Recorded{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
	return mux
}

func controlError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}
