package faketelegram

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeserver"
)

// ControlPrefix is the path prefix of the control endpoints.
const ControlPrefix = "/_control/"

// ControlHandler returns the HTTP control interface, for shells and test
// processes that cannot call the Go methods. Bodies are JSON.
//
//	POST /_control/message   {"from":{"id":7,"first_name":"Ann"},"text":"hi"}
//	                         optional: "chat":{"id":-100,"type":"supergroup","title":"t"},
//	                         "reply_to":N, "photo":BASE64, "document":BASE64,
//	                         "file_name":"a.pdf", "mime_type":"application/pdf"
//	                         → {"update_id":…,"message_id":…}
//	POST /_control/press     {"chat_id":7,"message_id":3,"from":{"id":7},"data":"allow"}
//	                         → {"update_id":…,"callback_query_id":"…"}
//	POST /_control/fail      {"method":"sendMessage","n":2,"status":429,"retry_after":3}
//	POST /_control/limit     {"chat_id":7,"for":"30s"}   ("0s" lifts it)
//	GET  /_control/mode      {"mode":"up"}
//	POST /_control/mode?m=refuse&for=5s   up, refuse, 502 or hang; for= switches back after
//	GET  /_control/chats     every chat the bot knows
//	GET  /_control/chats/ID  {"chat":…,"sent":[…],"ops":[…]}: what the bot sent there
//	GET  /_control/answer?id=QUERY   the bot's answer to a button press
//	GET  /_control/commands?scope=default&language_code=
//	GET  /_control/updates   updates not yet confirmed
//	GET  /_control/calls     every API call answered
//
// When served on the API listener (EnableControl), ModeRefuse refuses the
// control endpoints too; use for=DURATION or a listener of their own.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ControlPrefix+"message", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Chat     *Chat  `json:"chat"`
			From     User   `json:"from"`
			Text     string `json:"text"`
			ReplyTo  int64  `json:"reply_to"`
			Photo    []byte `json:"photo"`
			Document []byte `json:"document"`
			FileName string `json:"file_name"`
			MimeType string `json:"mime_type"`
		}
		if !decode(w, r, &req) {
			return
		}
		in := Incoming{From: req.From, Text: req.Text, ReplyTo: req.ReplyTo, Photo: req.Photo, Document: req.Document, FileName: req.FileName, MimeType: req.MimeType}
		if req.Chat != nil {
			in.Chat = *req.Chat
		}
		u, err := s.Send(in)
		if err != nil {
			controlError(w, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"update_id": u.UpdateID, "message_id": u.Message.MessageID})
	})
	mux.HandleFunc("POST "+ControlPrefix+"press", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ChatID    int64  `json:"chat_id"`
			MessageID int64  `json:"message_id"`
			From      User   `json:"from"`
			Data      string `json:"data"`
		}
		if !decode(w, r, &req) {
			return
		}
		u, err := s.Press(req.ChatID, req.MessageID, req.From, req.Data)
		if err != nil {
			controlError(w, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"update_id": u.UpdateID, "callback_query_id": u.CallbackQuery.ID})
	})
	mux.HandleFunc("POST "+ControlPrefix+"fail", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method string `json:"method"`
			N      int    `json:"n"`
			Fault
		}
		if !decode(w, r, &req) {
			return
		}
		if req.N <= 0 {
			controlError(w, "n must be positive")
			return
		}
		s.FailNext(req.Method, req.N, req.Fault)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST "+ControlPrefix+"limit", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ChatID int64  `json:"chat_id"`
			For    string `json:"for"`
		}
		if !decode(w, r, &req) {
			return
		}
		d, err := time.ParseDuration(req.For)
		if err != nil {
			controlError(w, "bad duration for: "+req.For)
			return
		}
		s.LimitChat(req.ChatID, d)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	fakeserver.HandleMode(mux, ControlPrefix, writeJSON, s.Mode, ParseMode, func(m Mode, d time.Duration, announce func()) {
		s.switchMode(m, d, 0, announce)
	})
	mux.HandleFunc("GET "+ControlPrefix+"chats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Chats()))
	})
	mux.HandleFunc("GET "+ControlPrefix+"chats/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			controlError(w, "bad chat id")
			return
		}
		var info *Chat
		for _, c := range s.Chats() {
			if c.ID == id {
				info = &c
			}
		}
		if info == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such chat"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"chat": info, "sent": nonNil(s.Sent(id)), "ops": nonNil(s.Ops(id))})
	})
	mux.HandleFunc("GET "+ControlPrefix+"answer", func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.Answer(r.FormValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "not answered"})
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("GET "+ControlPrefix+"commands", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Commands(r.FormValue("scope"), r.FormValue("language_code"))))
	})
	mux.HandleFunc("GET "+ControlPrefix+"updates", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Pending()))
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
