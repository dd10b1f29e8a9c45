package claude

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/permission"
)

// PermissionMode is how the CLI treats a tool call that needs permission
// (agent.permissions).
type PermissionMode string

// The permission modes.
const (
	// PermissionsDeny (the default) starts the CLI without a way to ask:
	// it refuses such calls on its own, tells the model, and lists them in
	// the result's permission_denials (agent.Result.Denials).
	PermissionsDeny PermissionMode = "deny"
	// PermissionsAsk starts the CLI with --permission-prompt-tool stdio:
	// it asks dispatch with a control_request line and waits for the
	// control_response; the driver asks spec.Permissions.
	PermissionsAsk PermissionMode = "ask"
	// PermissionsBypass starts the CLI with --dangerously-skip-permissions:
	// every tool runs without asking. The CLI refuses this mode as root
	// unless IS_SANDBOX=1 is in its environment (agent.env).
	PermissionsBypass PermissionMode = "bypass"
)

// ParsePermissionMode parses deny, ask or bypass ("" is deny).
func ParsePermissionMode(s string) (PermissionMode, error) {
	switch m := PermissionMode(s); m {
	case "":
		return PermissionsDeny, nil
	case PermissionsDeny, PermissionsAsk, PermissionsBypass:
		return m, nil
	}
	return "", fmt.Errorf("unknown permission mode %q (want deny, ask or bypass)", s)
}

// DefaultPermissionTimeout bounds the wait for an answer to one request.
const DefaultPermissionTimeout = permission.DefaultTimeout

// permissionArgs are the CLI arguments for the permission mode and the
// allowed tools (one --allowedTools=RULE each, so a rule with spaces such
// as "Bash(git commit:*)" stays whole).
func permissionArgs(mode PermissionMode, allowed []string) []string {
	var args []string
	switch mode {
	case PermissionsAsk:
		args = append(args, "--permission-prompt-tool", "stdio")
	case PermissionsBypass:
		args = append(args, "--dangerously-skip-permissions")
	}
	for _, t := range allowed {
		args = append(args, "--allowedTools="+t)
	}
	return args
}

// controlRequest is a control_request line of the CLI.
type controlRequest struct {
	RequestID string `json:"request_id"`
	Request   struct {
		Subtype     string          `json:"subtype"`
		ToolName    string          `json:"tool_name"`
		DisplayName string          `json:"display_name"`
		Description string          `json:"description"`
		Input       json.RawMessage `json:"input"`
		ToolUseID   string          `json:"tool_use_id"`
		BlockedPath string          `json:"blocked_path"`
		Suggestions json.RawMessage `json:"permission_suggestions"`
		UserInput   bool            `json:"requires_user_interaction"`
	} `json:"request"`
}

// The control_response lines the driver writes: success with a
// can_use_tool answer, or error (for a subtype it does not handle; the CLI
// answers an unknown subtype of ours the same way).
type (
	controlResponse struct {
		Type     string `json:"type"` // control_response
		Response any    `json:"response"`
	}
	successResponse struct {
		Subtype   string         `json:"subtype"` // success
		RequestID string         `json:"request_id"`
		Response  permissionBody `json:"response"`
	}
	permissionBody struct {
		Behavior     string          `json:"behavior"` // allow | deny
		UpdatedInput json.RawMessage `json:"updatedInput,omitempty"`
		Message      string          `json:"message,omitempty"`
	}
	errorResponse struct {
		Subtype   string `json:"subtype"` // error
		RequestID string `json:"request_id"`
		Error     string `json:"error"`
	}
)

// encodeLine is v as one JSON line, newline-terminated, HTML not escaped.
func encodeLine(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only fixed, encodable types reach here
	}
	return buf.Bytes()
}

// answerLine is the control_response for a can_use_tool request. An allow
// always carries the input to run (updatedInput), the person's edit or
// else the input asked about: some CLI versions require it.
func answerLine(id string, input json.RawMessage, a agent.PermissionAnswer) []byte {
	body := permissionBody{Behavior: "deny", Message: a.Message}
	if a.Allow {
		body = permissionBody{Behavior: "allow", UpdatedInput: a.UpdatedInput}
		if len(body.UpdatedInput) == 0 {
			body.UpdatedInput = input
		}
		if len(body.UpdatedInput) == 0 {
			body.UpdatedInput = json.RawMessage("{}")
		}
	} else if body.Message == "" {
		body.Message = "Permission denied."
	}
	return encodeLine(controlResponse{"control_response", successResponse{"success", id, body}})
}

// errorLine is the error control_response to request id.
func errorLine(id, msg string) []byte {
	return encodeLine(controlResponse{"control_response", errorResponse{"error", id, msg}})
}

// onControlRequest handles a control_request line: can_use_tool is asked
// of spec.Permissions in a goroutine of its own (the reader must go on:
// the CLI may ask about several calls, or withdraw one); any other subtype
// gets an error response at once, so the CLI never waits on dispatch for
// something it does not do.
func (p *Process) onControlRequest(line []byte) {
	var cr controlRequest
	if err := json.Unmarshal(line, &cr); err != nil || cr.RequestID == "" {
		p.log.Warn("agent control request unreadable; ignored", "line", clip(line, 200))
		return
	}
	if cr.Request.Subtype != "can_use_tool" {
		p.log.Warn("agent control request of an unsupported subtype refused", "subtype", cr.Request.Subtype)
		p.respond(errorLine(cr.RequestID, "dispatch does not support control requests of subtype "+cr.Request.Subtype))
		return
	}
	r := cr.Request
	req := agent.PermissionRequest{
		ID: cr.RequestID, ToolUseID: r.ToolUseID, Tool: r.ToolName, DisplayName: r.DisplayName,
		Description: r.Description, Input: r.Input, BlockedPath: r.BlockedPath, Suggestions: r.Suggestions,
		UserInteraction: r.UserInput, Summary: permission.Summary(r.ToolName, r.Input),
	}
	p.mu.Lock()
	parent := p.turnCtx
	if parent == nil { // asked between turns: nobody is waiting for this agent
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	mine := &pendingAsk{cancel: cancel}
	if p.asks == nil {
		p.asks = map[string]*pendingAsk{}
	}
	if old := p.asks[req.ID]; old != nil { // a request id sent again supersedes the first
		old.cancel(errSuperseded)
	}
	p.asks[req.ID] = mine
	p.mu.Unlock()
	go p.ask(ctx, mine, req)
}

// pendingAsk is a request being asked about.
type pendingAsk struct{ cancel context.CancelCauseFunc }

var (
	errWithdrawn  = errors.New("the agent withdrew the request")
	errSuperseded = errors.New("the agent asked again with the same request id")
	errExited     = errors.New("the agent exited")
)

// ask asks spec.Permissions about req and writes the answer, unless the
// agent withdrew the request or ended meanwhile (nobody is listening).
func (p *Process) ask(ctx context.Context, mine *pendingAsk, req agent.PermissionRequest) {
	defer func() {
		p.mu.Lock()
		if p.asks[req.ID] == mine {
			delete(p.asks, req.ID)
		}
		p.mu.Unlock()
		mine.cancel(nil)
	}()
	stop := context.AfterFunc(p.life, func() { mine.cancel(errExited) })
	defer stop()
	ans, err := p.decide(ctx, req)
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errWithdrawn), errors.Is(cause, errSuperseded), errors.Is(cause, errExited):
		p.log.Info("permission request closed without an answer", "request_id", req.ID, "tool", req.Tool, "why", cause)
		return
	case ctx.Err() != nil:
		ans = agent.PermissionAnswer{Message: "Permission denied: the turn that asked was abandoned."}
	case err != nil:
		ans = agent.PermissionAnswer{Message: "Permission denied: " + err.Error()}
	}
	p.log.Info("permission request answered", "request_id", req.ID, "tool", req.Tool, "allow", ans.Allow)
	p.respond(answerLine(req.ID, req.Input, ans))
}

// decide asks the asker, bounded by the permission timeout. With no asker
// every request is refused.
func (p *Process) decide(ctx context.Context, req agent.PermissionRequest) (agent.PermissionAnswer, error) {
	if p.spec.Permissions == nil {
		return agent.PermissionAnswer{Message: "Permission denied: nobody can be asked for this chat."}, nil
	}
	tctx, cancel := context.WithTimeoutCause(ctx, p.permTimeout, errAskTimeout{p.permTimeout})
	defer cancel()
	ans, err := p.spec.Permissions.Ask(tctx, req)
	if err != nil && tctx.Err() != nil {
		err = context.Cause(tctx)
	}
	return ans, err
}

// errAskTimeout: nobody answered within the permission timeout.
type errAskTimeout struct{ d time.Duration }

func (e errAskTimeout) Error() string {
	return fmt.Sprintf("nobody answered within %s", e.d)
}

// Asking counts the permission requests open now (agent.PermissionWaiter).
func (p *Process) Asking() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.asks)
}

var _ agent.PermissionWaiter = (*Process)(nil)

// onControlCancel handles control_cancel_request: the CLI withdrew a
// request (an interrupt, a tool call aborted); its Ask is cancelled and
// no answer is written.
func (p *Process) onControlCancel(line []byte) {
	var c struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(line, &c) != nil {
		return
	}
	p.mu.Lock()
	pa := p.asks[c.RequestID]
	delete(p.asks, c.RequestID)
	p.mu.Unlock()
	if pa != nil {
		pa.cancel(errWithdrawn)
	}
}

// respond writes a control_response line. A failed write means the CLI is
// gone or stopped reading; its end is handled elsewhere.
func (p *Process) respond(line []byte) {
	ctx, cancel := context.WithTimeout(p.life, p.grace)
	defer cancel()
	if _, err := p.write(ctx, line); err != nil {
		p.log.Warn("could not answer the agent's control request", "err", err)
	}
}

// onAssistant reports the tool_use blocks of an assistant line as progress.
func (p *Process) onAssistant(line []byte) {
	if p.spec.Progress == nil || !bytes.Contains(line, []byte(`"tool_use"`)) {
		return
	}
	var a struct {
		Message struct {
			Content []struct {
				Type  string          `json:"type"`
				ID    string          `json:"id"`
				Name  string          `json:"name"`
				Input json.RawMessage `json:"input"`
			} `json:"content"`
		} `json:"message"`
	}
	if json.Unmarshal(line, &a) != nil {
		return
	}
	for _, b := range a.Message.Content {
		if b.Type == "tool_use" {
			p.spec.Progress(agent.Progress{ToolUseID: b.ID, Tool: b.Name, Input: b.Input, Summary: permission.Summary(b.Name, b.Input)})
		}
	}
}

// parseDenials reads a result line's permission_denials.
func parseDenials(line []byte) []agent.Denial {
	if !bytes.Contains(line, []byte(`"permission_denials"`)) {
		return nil
	}
	var r struct {
		Denials []struct {
			ToolName  string          `json:"tool_name"`
			ToolUseID string          `json:"tool_use_id"`
			ToolInput json.RawMessage `json:"tool_input"`
		} `json:"permission_denials"`
	}
	if json.Unmarshal(line, &r) != nil || len(r.Denials) == 0 {
		return nil
	}
	out := make([]agent.Denial, len(r.Denials))
	for i, d := range r.Denials {
		out[i] = agent.Denial{ToolUseID: d.ToolUseID, Tool: d.ToolName, Input: d.ToolInput}
	}
	return out
}
