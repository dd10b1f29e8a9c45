package slack_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/channel/slack"
	"github.com/dispatchd/dispatch/internal/fakeslack"
)

// Past its role's deadline a channel neither sends nor takes envelopes
// in: its Socket Mode connection is closed, a reply waits in the outbox
// and a message's envelope stays unacknowledged at Slack, for the node
// that holds the role next (here: the same one, once its role is
// renewed); nothing is lost or sent twice.
func TestNothingSentPastTheRoleDeadline(t *testing.T) {
	var (
		until atomic.Int64 // unix nanoseconds; 0: not held
		lost  atomic.Bool
	)
	until.Store(time.Now().Add(time.Hour).UnixNano())
	r := newRigUntil(t, func(s string) string {
		if !lost.Swap(true) {
			until.Store(time.Now().Add(-time.Second).UnixNano()) // lost while the first turn ran
		}
		return "echo: " + s
	}, func() time.Time {
		if n := until.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Time{}
	})
	p := r.post(fakeslack.Incoming{User: ann, Text: "first"})
	dm := p.Channel
	chat := slack.ChatID(r.fake.TeamID(), dm)
	accepted := func() int { return len(r.messages(chat)) }
	r.waitFor("the first message taken in and the connection closed", func() bool {
		return lost.Load() && accepted() == 1 && r.fake.Connections() == 0
	})
	// The reply was enqueued after the deadline: it stays pending.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(r.fake.BotMessages(dm)); n != 0 {
			t.Fatalf("%d messages sent past the role's deadline", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A message that comes meanwhile is not taken in, nor acknowledged.
	second := r.post(fakeslack.Incoming{User: ann, Text: "second"})
	time.Sleep(1500 * time.Millisecond)
	if n := accepted(); n != 1 {
		t.Fatalf("%d messages accepted past the role's deadline, want only the first", n)
	}
	if e, _ := r.fake.Envelope(second.Envelopes[0]); e.Acked || r.fake.Connections() != 0 {
		t.Fatalf("past the deadline: envelope %+v, %d connections", e, r.fake.Connections())
	}
	if st := r.ch.Status(); st.Connected || st.Error == "" {
		t.Fatalf("status past the deadline %+v", st)
	}
	// Renewed: the reply goes, once; the second message is taken in
	// and answered.
	until.Store(time.Now().Add(time.Hour).UnixNano())
	sent := r.botMessages(dm, 2)
	if len(sent) != 2 || sent[0].Text != "echo: first" || sent[1].Text != "echo: second" {
		t.Fatalf("sent %+v", sent)
	}
	r.waitFor("the second envelope acknowledged", func() bool {
		e, _ := r.fake.Envelope(second.Envelopes[0])
		return e.Acked
	})
	settle()
	if n := accepted(); n != 2 || len(r.fake.BotMessages(dm)) != 2 {
		t.Fatalf("%d messages accepted, %d sent; want 2 and 2", n, len(r.fake.BotMessages(dm)))
	}
}
