package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/peercred"
	"github.com/dispatchd/dispatch/internal/resources"
	"github.com/dispatchd/dispatch/internal/supervisor"
)

// agentGate decides, for each control-socket connection, whether its
// peer may use the API. The socket is the daemon's user's own door
// (mode 0600), but agents run as that user too, and an agent acting on a
// stranger's message must not read or drive other chats: a connection from
// an agent's process (the agent, or anything it started) is refused unless
// its chat is trusted.
type agentGate struct {
	agents  func() map[int]string
	trusted []string
	mark    string
	log     *slog.Logger
}

// connContext is the control server's ConnContext: it reads the peer's
// credentials once, when the connection is accepted.
func (g *agentGate) connContext(ctx context.Context, c net.Conn) context.Context {
	return api.WithPeer(ctx, api.Peer{Refuse: g.verdict(c)})
}

// verdict returns why c's peer is refused, or "".
func (g *agentGate) verdict(c net.Conn) string {
	cred, err := peercred.Of(c)
	if err == peercred.ErrUnsupported {
		return ""
	}
	if err != nil {
		g.log.Warn("control socket: cannot tell who connected; refused", "err", err)
		return "cannot tell who connected"
	}
	if cred.UID != os.Geteuid() && cred.UID != 0 {
		return fmt.Sprintf("uid %d is not the daemon's user", cred.UID)
	}
	chat, isAgent := resources.AgentOf("", cred.PID, os.Getpid(), g.agents(), supervisor.MarkerVar, g.mark)
	if !isAgent {
		return ""
	}
	if chat != "" && slices.Contains(g.trusted, chat) {
		return ""
	}
	who := "an agent process of no live chat"
	if chat != "" {
		who = fmt.Sprintf("the agent of chat %q", chat)
	}
	g.log.Warn("control socket: refused a connection from an agent", "pid", cred.PID, "chat", chat)
	return fmt.Sprintf("connection from %s refused: agents may not use the control API (only the chats in sessions.trusted)", who)
}
