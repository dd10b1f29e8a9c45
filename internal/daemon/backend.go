package daemon

import (
	"context"

	"github.com/dispatchd/dispatch/internal/cluster"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/webhook"
	"github.com/dispatchd/dispatch/internal/wire"
)

// backend is what the HTTP API drives: the supervisor, plus the event feed
// (read from the store) and webhook delivery.
type backend struct {
	*supervisor.Supervisor
	st   store.Backend
	wh   *webhook.Manager
	node *cluster.Manager // nil on SQLite
	ch   channels
	// sched keeps and fires the schedules (schedules.go).
	sched *schedules
}

// Channels lists the chat-app channels (GET /v1/channels).
func (b backend) Channels(ctx context.Context) ([]wire.ChannelStatus, error) {
	return b.ch.status(ctx, b.st)
}

// Status adds the webhook endpoints' delivery state to the supervisor's.
func (b backend) Status(ctx context.Context) (supervisor.Status, error) {
	st, err := b.Supervisor.Status(ctx)
	if err != nil {
		return st, err
	}
	if b.node != nil {
		if st, err = clusterStatus(ctx, b.node, b.st, b.Supervisor, st); err != nil {
			return st, err
		}
	}
	if len(b.wh.Endpoints()) > 0 {
		if st.Webhooks, err = b.wh.Status(ctx, false, 0); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (b backend) Events(ctx context.Context, q events.Query) ([]events.Event, int64, error) {
	return b.st.Events(ctx, q)
}

func (b backend) EventsVisible() (int64, <-chan struct{}) { return b.st.EventsVisible() }

func (b backend) Webhooks(ctx context.Context) ([]webhook.EndpointStatus, error) {
	return b.wh.Status(ctx, true, 100)
}

func (b backend) RetryWebhook(ctx context.Context, name string) (int, error) {
	return b.wh.Retry(ctx, name)
}

// webhookEndpoints converts the configured endpoints.
func webhookEndpoints(cfgs []config.Webhook) []webhook.Endpoint {
	out := make([]webhook.Endpoint, len(cfgs))
	for i, c := range cfgs {
		var types []events.Type
		for _, t := range c.Events {
			types = append(types, events.Type(t))
		}
		out[i] = webhook.Endpoint{Name: c.Name, URL: c.URL, Secret: c.Secret, Events: types, Timeout: c.Timeout, RetryFor: c.RetryFor}
	}
	return out
}
