package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/cluster"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/wire"
)

// channels are the configured chat-app channels of this daemon.
type channels []chatChannel

// chatChannel is one running chat-app channel, whatever its platform.
type chatChannel interface {
	Name() string
	Start()
	Stop()
	Status() telegram.Status
}

// channelRole is the cluster role of the node that runs the channel
// name: one node at a time polls a bot and sends its messages.
func channelRole(name string) string { return "channel:" + name }

// channelRoles are the roles of the configured channels.
func channelRoles(cfg config.Config) []string {
	out := make([]string, len(cfg.Channels))
	for i, c := range cfg.Channels {
		out[i] = channelRole(c.Name)
	}
	return out
}

// openChannels makes the configured channels (not started: each runs
// while this daemon holds its role). Their token files are checked like
// the API's: a file group or others may read is refused. On a cluster
// node (node not nil) a channel sends and polls only while its role is
// held, and never past the role's deadline, so that two nodes never
// send or poll for one bot at once.
func openChannels(cfg config.Config, st store.Backend, sup *supervisor.Supervisor, node *cluster.Manager, reg prometheus.Registerer, log *slog.Logger) (channels, error) {
	if len(cfg.Channels) == 0 {
		return nil, nil
	}
	m := channel.NewMetrics(reg)
	var out channels
	for i, c := range cfg.Channels {
		if c.Kind == config.ChannelSlack {
			ch, err := openSlack(i, c, st, sup, m, log, roleUntil(node, channelRole(c.Name)), chatFolders{cfg.WorkDir()})
			if err != nil {
				return nil, err
			}
			out = append(out, ch)
			continue
		}
		key := fmt.Sprintf("channels[%d].token_file", i)
		tok, err := api.LoadToken(key, c.TokenFile)
		if err != nil {
			return nil, err
		}
		allow := make([]int64, 0, len(c.Allow))
		for _, a := range c.Allow {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("channels[%d].allow: %w", i, err)
			}
			allow = append(allow, n)
		}
		ch, err := telegram.New(telegram.Config{
			Name: c.Name, Token: tok, APIURL: c.APIURL, Allow: allow, Store: st, Accepted: sup.Accepted, Control: chatControl{sup}, Permissions: sup.Permissions(),
			Metrics: m, Log: log.With("component", "channel"), Until: roleUntil(node, channelRole(c.Name)),
			Folders: chatFolders{cfg.WorkDir()}, MaxAttachment: int64(c.MaxAttachment),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

// roleUntil is the deadline of role on node (nil on a single node: no
// deadline).
func roleUntil(node *cluster.Manager, role string) func() time.Time {
	if node == nil {
		return nil
	}
	return func() time.Time { return node.RoleUntil(role) }
}

// addRoles makes each channel the work of its role.
func (cs channels) addRoles(r *roles) {
	for _, c := range cs {
		r.add(channelRole(c.Name()), c.Start, c.Stop)
	}
}

// roles are the channels' roles.
func (cs channels) roles() []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = channelRole(c.Name())
	}
	return out
}

// status lists the channels with their deliveries. On a cluster node
// (node not nil) each names the node holding it; one held by another
// node shows what the database knows (its deliveries), not this node's
// stale view of its connection.
func (cs channels) status(ctx context.Context, st store.Backend, node *cluster.Manager) ([]wire.ChannelStatus, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	counts, err := st.DeliveryCounts(ctx)
	if err != nil {
		return nil, err
	}
	var holders map[string]string
	if node != nil {
		if holders, err = node.RoleHolders(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]wire.ChannelStatus, 0, len(cs))
	for _, c := range cs {
		s := c.Status()
		n := counts[s.Name]
		w := wire.ChannelStatus{Name: s.Name, Kind: s.Kind, Bot: s.Bot, Connected: s.Connected, Error: s.Error,
			Conflict: s.Conflict, Backlog: n.Pending, Failed: n.Failed, Delivered: n.Done}
		if node != nil {
			w.Node = holders[channelRole(s.Name)]
			if w.Node != node.NodeID() {
				// Not run here: this node's view of the connection is
				// stale (or it never had one).
				w.Remote = w.Node != ""
				w.Connected, w.Error, w.Conflict, s.LastUpdate = false, "", false, time.Time{}
			}
		}
		if !s.LastUpdate.IsZero() {
			w.LastUpdate = s.LastUpdate.UTC().Format(time.RFC3339)
		}
		if n.HeldUntil.After(time.Now()) {
			w.RateLimitedUntil = n.HeldUntil.UTC().Format(time.RFC3339)
		}
		out = append(out, w)
	}
	return out, nil
}

// chatControl carries out the channels' in-chat commands on the
// supervisor.
type chatControl struct{ sup *supervisor.Supervisor }

func (c chatControl) Restart(ctx context.Context, chat string, clean bool) error {
	return c.sup.Restart(ctx, chat, clean)
}

func (c chatControl) StopTurn(ctx context.Context, chat string) (bool, error) {
	return c.sup.StopTurn(ctx, chat)
}

// ChatStatus describes chat for its person: state and health, the
// messages waiting, the turns so far.
func (c chatControl) ChatStatus(ctx context.Context, chat string) (string, error) {
	st, err := c.sup.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range st.Sessions {
		if s.ChatID != chat {
			continue
		}
		health := "healthy"
		if !s.Healthy {
			health = "unhealthy"
			if s.HealthReason != "" {
				health += " (" + s.HealthReason + ")"
			}
		}
		busy := ""
		if s.Busy {
			busy = ", answering now"
		}
		return fmt.Sprintf("%s, %s%s; %d waiting; %d turns, %d restarts.", s.State, health, busy, s.QueueDepth, s.Turns, s.Restarts), nil
	}
	return "", errors.New("no such chat")
}
