package telegram_test

import (
	"context"
	"sync"
	"testing"

	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// control is a Control whose chat tg:42 has a turn running until stopped.
type control struct {
	mu      sync.Mutex
	running bool
	stops   []string
}

func (c *control) Restart(context.Context, string, bool) error { return nil }
func (c *control) ChatStatus(context.Context, string) (string, error) {
	return "idle", nil
}
func (c *control) StopTurn(_ context.Context, chat string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stops = append(c.stops, chat)
	was := c.running
	c.running = false
	return was, nil
}

// /stop is registered; it stops the chat's turn and says nothing itself
// (the turn's "Stopped." comes as its reply); with nothing running it says
// so.
func TestStopCommand(t *testing.T) {
	ctl := &control{running: true}
	r := newRig(t, echo, func(c *telegram.Config) { c.Control = ctl })
	r.send(faketelegram.Incoming{From: ann, Text: "hi"})
	r.waitSent(42, 1)
	if cmds := r.fake.Commands("", ""); len(cmds) != 3 || cmds[2].Command != "stop" {
		t.Fatalf("commands %+v", cmds)
	}
	r.send(faketelegram.Incoming{From: ann, Text: "/stop"})
	r.send(faketelegram.Incoming{From: ann, Text: "/stop"})
	// Commands are answered in order: had the first /stop answered, its
	// answer would come before the second's.
	if sent := r.waitSent(42, 2); len(sent) != 2 || sent[1].Text != "Nothing is running." {
		t.Fatalf("after two /stop: %+v", sent)
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if len(ctl.stops) != 2 || ctl.stops[0] != "tg:42" {
		t.Fatalf("stops %v", ctl.stops)
	}
	if m := r.messages("tg:42"); len(m) != 1 {
		t.Fatalf("%d messages queued: /stop is not text for the agent", len(m))
	}
}
