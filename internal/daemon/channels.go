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
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/wire"
)

// channels are the configured chat-app channels of this daemon.
type channels []chatChannel

// chatChannel is one running chat-app channel, whatever its platform.
type chatChannel interface {
	Start()
	Stop()
	Status() telegram.Status
}

// openChannels makes the configured channels (not started). Their token
// files are checked like the API's: a file group or others may read is
// refused. With several nodes, a channel would need one node to hold it
// (a role with a lease), which is not there yet: channels are refused.
func openChannels(cfg config.Config, st store.Backend, sup *supervisor.Supervisor, reg prometheus.Registerer, log *slog.Logger) (channels, error) {
	if len(cfg.Channels) == 0 {
		return nil, nil
	}
	m := channel.NewMetrics(reg)
	if cfg.Store.Postgres() {
		return nil, errors.New("channels: not available yet with store.driver postgres (one node must hold each channel); use them with the embedded store")
	}
	var out channels
	for i, c := range cfg.Channels {
		if c.Kind == config.ChannelSlack {
			ch, err := openSlack(i, c, st, sup, m, log)
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
			Name: c.Name, Token: tok, APIURL: c.APIURL, Allow: allow, Store: st, Accepted: sup.Accepted, Control: chatControl{sup},
			Metrics: m, Log: log.With("component", "channel"),
			Folders: chatFolders{cfg.WorkDir()}, MaxAttachment: int64(c.MaxAttachment),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	return out, nil
}

func (cs channels) start() {
	for _, c := range cs {
		c.Start()
	}
}

func (cs channels) stop() {
	for _, c := range cs {
		c.Stop()
	}
}

// status lists the channels with their deliveries.
func (cs channels) status(ctx context.Context, st store.Backend) ([]wire.ChannelStatus, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	counts, err := st.DeliveryCounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.ChannelStatus, 0, len(cs))
	for _, c := range cs {
		s := c.Status()
		n := counts[s.Name]
		w := wire.ChannelStatus{Name: s.Name, Kind: s.Kind, Bot: s.Bot, Connected: s.Connected, Error: s.Error,
			Backlog: n.Pending, Failed: n.Failed, Delivered: n.Done}
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
