package agent

import (
	"context"
	"encoding/json"
)

// PermissionRequest is an agent asking, during a turn, whether it may run
// one tool call. Fields are as the agent sent them; Summary is a short,
// terminal-safe description for a person (the command, the file path and
// size).
type PermissionRequest struct {
	ID          string          // the agent's request id (the CLI's request_id)
	ToolUseID   string          // the tool call's id in the conversation
	Tool        string          // tool name, e.g. "Bash", "Write"
	DisplayName string          // the agent's display name of the tool
	Description string          // the agent's own one-line description
	Input       json.RawMessage // the tool's input, a JSON object
	BlockedPath string          // the path that made the agent ask, if it said
	Suggestions json.RawMessage // the agent's permission_suggestions, verbatim
	// UserInteraction: the tool is a question to the person
	// (AskUserQuestion), answered by allowing it with the answers in
	// UpdatedInput, not a permission to grant.
	UserInteraction bool
	Summary         string
}

// PermissionAnswer is the answer to a PermissionRequest.
type PermissionAnswer struct {
	Allow bool
	// Message tells the agent why it was refused (it becomes the tool's
	// error result, which the model reads).
	Message string
	// UpdatedInput, when allowing, replaces the tool's input; nil runs the
	// call as asked.
	UpdatedInput json.RawMessage
}

// Asker answers an agent's permission requests. Ask blocks until there is
// an answer or ctx ends; ctx ends when the turn that asked is abandoned,
// the agent withdraws the request or exits, or the driver's own time limit
// for an answer passes. An error (ctx's included) refuses the call. Ask may
// be called concurrently (an agent may ask about several calls at once).
type Asker interface {
	Ask(ctx context.Context, req PermissionRequest) (PermissionAnswer, error)
}

// AskerFunc adapts a function to an Asker.
type AskerFunc func(ctx context.Context, req PermissionRequest) (PermissionAnswer, error)

// Ask calls f.
func (f AskerFunc) Ask(ctx context.Context, req PermissionRequest) (PermissionAnswer, error) {
	return f(ctx, req)
}

// PermissionWaiter is implemented by processes that can ask permissions:
// Asking counts the requests open now. While one is open the agent waits
// for a person, not for the API, so its silence is not a sign of a hung
// turn.
type PermissionWaiter interface {
	Asking() int
}

// Progress is one tool call an agent started during a turn (or asked
// about and then ran), for showing that a long turn is working.
type Progress struct {
	ToolUseID string
	Tool      string
	Input     json.RawMessage
	Summary   string // short, terminal-safe: the command, the file path and size
}

// Denial is a tool call the agent was refused during a turn, as its final
// result lists them (permission mode deny: the CLI refuses on its own).
type Denial struct {
	ToolUseID string
	Tool      string
	Input     json.RawMessage
}
