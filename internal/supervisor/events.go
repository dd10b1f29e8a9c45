package supervisor

import (
	"context"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/session"
)

// recordAPIChange queues an api_down or api_up event. The breaker calls it
// on its own goroutine, which must not wait on the store; writeAPIEvents
// writes the events in the order they happened.
func (s *Supervisor) recordAPIChange(up bool) {
	ev := events.Event{Type: events.APIDown, At: s.clock.Now(), Reason: "the AI API is unreachable: new turns are held and probed"}
	if up {
		ev = events.Event{Type: events.APIUp, At: s.clock.Now(), Reason: "the AI API answers again: held messages are processed in order"}
	}
	select {
	case s.apiEvents <- ev:
	default:
		s.log.Error("api event dropped: too many API state changes waiting to be written", "type", string(ev.Type))
	}
}

// writeAPIEvents writes the queued API events, each retried until the
// store takes it, until ctx ends (then the ones already queued get a last
// try).
func (s *Supervisor) writeAPIEvents(ctx context.Context) {
	write := func(ctx context.Context, ev events.Event) {
		for try := 0; ; try++ {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.store.AppendEvent(wctx, ev)
			cancel()
			if err == nil || ctx.Err() != nil {
				return
			}
			s.log.Warn("write api event; retrying", "type", string(ev.Type), "err", err)
			t := s.clock.NewTimer(session.StoreRetryDelay(try))
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
	for {
		select {
		case ev := <-s.apiEvents:
			write(ctx, ev)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for {
				select {
				case ev := <-s.apiEvents:
					write(last, ev)
				default:
					return
				}
			}
		}
	}
}

// purgeEvents removes events past events.retain, a chunk at a time, like
// the answered messages past queue.retain_done.
func (s *Supervisor) purgeEvents(ctx context.Context, now time.Time) {
	if s.cfg.RetainEvents <= 0 {
		return
	}
	n, err := s.store.PurgeEvents(ctx, now.Add(-s.cfg.RetainEvents), 20000)
	if err != nil {
		s.log.Error("purge events", "err", err)
	} else if n > 0 {
		s.log.Info("purged events past their retention", "count", n, "retain", s.cfg.RetainEvents)
	}
	// Channels' delivered replies are kept as long as the events.
	n, err = s.store.PurgeDelivered(ctx, now.Add(-s.cfg.RetainEvents), 20000)
	if err != nil {
		s.log.Error("purge channel deliveries", "err", err)
	} else if n > 0 {
		s.log.Info("purged delivered channel replies past the events' retention", "count", n, "retain", s.cfg.RetainEvents)
	}
}
