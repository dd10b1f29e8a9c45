package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/dispatchd/dispatch/internal/permission"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Permission requests and allow_always rules:
//
//	GET  /v1/permissions[?chat=C]          the open requests, oldest first
//	GET  /v1/permissions/{id}              one request, open or closed
//	POST /v1/permissions/{id}              {"decision": "allow"|"allow_always"|"deny"}
//	                                       → the closed request; 404 unknown,
//	                                       409 already closed (or expired)
//	GET  /v1/permissions/rules[?chat=C]    the allow_always rules
//	POST /v1/permissions/rules/remove      {"chat_id", "tool"}; 404: no such rule

// The wire shapes of permissions.
type (
	PermissionOut  = wire.PermissionOut
	PermissionsOut = wire.PermissionsOut
	DecisionIn     = wire.DecisionIn
	RuleOut        = wire.RuleOut
	RulesOut       = wire.RulesOut
	RuleRequest    = wire.RuleRequest
)

// maxBy bounds who a decision names.
const maxBy = 64

func registerPermissions(mux *http.ServeMux, h *handler) {
	mux.HandleFunc("GET /v1/permissions", h.permissions)
	mux.HandleFunc("GET /v1/permissions/rules", h.permissionRules)
	mux.HandleFunc("POST /v1/permissions/rules/remove", h.removePermissionRule)
	mux.HandleFunc("GET /v1/permissions/{id}", h.permission)
	mux.HandleFunc("POST /v1/permissions/{id}", h.decide)
}

// PermissionOutOf converts a request.
func PermissionOutOf(r permission.Request) PermissionOut {
	o := PermissionOut{ID: r.ID, ChatID: r.ChatID, Tool: r.Tool, Summary: r.Summary,
		CreatedAt: rfc3339(r.CreatedAt), ExpiresAt: rfc3339(r.ExpiresAt),
		Decision: string(r.Decision), DecidedBy: r.DecidedBy, Reason: r.Reason}
	if !r.Open() {
		o.DecidedAt = rfc3339(r.DecidedAt)
	}
	return o
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (h *handler) broker(w http.ResponseWriter) *permission.Broker {
	pb := h.b.Permissions()
	if pb == nil {
		writeError(w, http.StatusNotFound, "permission requests are not kept by this daemon")
	}
	return pb
}

func (h *handler) permissions(w http.ResponseWriter, r *http.Request) {
	pb := h.broker(w)
	if pb == nil {
		return
	}
	open, err := pb.Open(r.Context(), r.URL.Query().Get("chat"))
	if err != nil {
		h.fail(w, "list permission requests", err)
		return
	}
	out := PermissionsOut{Requests: make([]PermissionOut, 0, len(open))}
	for _, q := range open {
		out.Requests = append(out.Requests, PermissionOutOf(q))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) permission(w http.ResponseWriter, r *http.Request) {
	pb := h.broker(w)
	if pb == nil {
		return
	}
	q, err := pb.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, permission.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no permission request "+quoteID(r.PathValue("id")))
		return
	}
	if err != nil {
		h.fail(w, "get permission request", err)
		return
	}
	writeJSON(w, http.StatusOK, PermissionOutOf(q))
}

func (h *handler) decide(w http.ResponseWriter, r *http.Request) {
	pb := h.broker(w)
	if pb == nil {
		return
	}
	var in DecisionIn
	if !decode(w, r, &in, maxCtlBody) {
		return
	}
	d, err := permission.ParseDecision(in.Decision)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	by := in.By
	if by == "" {
		by = "api"
	}
	if p := byProblem(by); p != "" {
		writeError(w, http.StatusBadRequest, "by: "+p)
		return
	}
	id := r.PathValue("id")
	closed, err := pb.Decide(r.Context(), id, d, by)
	switch {
	case errors.Is(err, permission.ErrNotFound):
		writeError(w, http.StatusNotFound, "no permission request "+quoteID(id))
	case errors.Is(err, permission.ErrClosed):
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":   fmt.Sprintf("permission request %s is already closed (%s by %s)", quoteID(id), closed.Decision, closed.DecidedBy),
			"request": PermissionOutOf(closed),
		})
	case store.IsFenced(err):
		// Several nodes: only the chat's owner answers for it.
		writeError(w, http.StatusConflict, "this node does not hold the chat's lease: answer on the node that runs the chat")
	case err != nil && closed.ID != "" && !closed.Open():
		// Allowed, but the standing rule was not stored.
		h.log.Error("permission rule", "err", err)
		writeJSON(w, http.StatusOK, PermissionOutOf(closed))
	case err != nil:
		h.fail(w, "decide permission request", err)
	default:
		writeJSON(w, http.StatusOK, PermissionOutOf(closed))
	}
}

func (h *handler) permissionRules(w http.ResponseWriter, r *http.Request) {
	pb := h.broker(w)
	if pb == nil {
		return
	}
	rules, err := pb.Rules(r.Context(), r.URL.Query().Get("chat"))
	if err != nil {
		h.fail(w, "list permission rules", err)
		return
	}
	out := RulesOut{Rules: make([]RuleOut, 0, len(rules))}
	for _, rl := range rules {
		out.Rules = append(out.Rules, RuleOut{ChatID: rl.ChatID, Tool: rl.Tool, CreatedAt: rfc3339(rl.CreatedAt), CreatedBy: rl.CreatedBy})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) removePermissionRule(w http.ResponseWriter, r *http.Request) {
	pb := h.broker(w)
	if pb == nil {
		return
	}
	var in RuleRequest
	if !decode(w, r, &in, maxCtlBody) {
		return
	}
	if in.ChatID == "" || in.Tool == "" {
		writeError(w, http.StatusBadRequest, "chat_id and tool are required")
		return
	}
	ok, err := pb.RemoveRule(r.Context(), in.ChatID, in.Tool)
	if err != nil {
		h.fail(w, "remove permission rule", err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("chat %q has no rule for %q", in.ChatID, in.Tool))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"removed": true})
}

// byProblem says what is wrong with who a decision names ("": nothing).
func byProblem(by string) string {
	if len(by) > maxBy {
		return fmt.Sprintf("at most %d bytes", maxBy)
	}
	for _, c := range by {
		if !unicode.IsPrint(c) || c == '\u202e' || c == '\u202d' {
			return "printable characters only"
		}
	}
	return ""
}

func quoteID(id string) string {
	if len(id) > MaxID {
		id = id[:MaxID] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(id, "?"))
}
