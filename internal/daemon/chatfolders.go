package daemon

import (
	"github.com/dispatchd/dispatch/internal/agent/claude"
)

// chatFolders gives the channels each chat's working directory, the same
// folder the agent of that chat works in (agent.dir, or state_dir/work,
// then the chat's safe name): attachments are saved there and the files
// the agent names are sent from there.
type chatFolders struct{ base string }

func (f chatFolders) ChatDir(chat string) (string, error) {
	return claude.ChatDir(f.base, chat), nil
}
