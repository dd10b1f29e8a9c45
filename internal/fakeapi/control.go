package fakeapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeserver"
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
	fakeserver.HandleMode(mux, ControlPrefix, writeJSON, s.Mode, ParseMode, func(m Mode, d time.Duration, announce func()) {
		s.switchMode(m, d, 0, announce)
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
