// Package channel is what every chat-app channel (Telegram today, Slack
// later) shares: the durable outbound side. A channel reads the event feed
// from its own cursor, copies the events it must deliver (replies and dead
// letters of its own chats) into its deliveries in the store, and sends
// each chat's deliveries in turn order through its platform's Sender,
// recording every part the platform accepted. A chat that is rate-limited
// or failing waits alone; other chats keep going.
//
// The platform side (the Sender, and the intake that accepts the
// platform's updates with store.AcceptFromChannel) lives in the
// platform's package, e.g. internal/channel/telegram.
package channel

import (
	"errors"
	"fmt"
	"time"
)

// RateLimitedError is a platform's "too many requests": the chat's next
// attempt waits After.
type RateLimitedError struct {
	After time.Duration
	Err   error
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limited for %s: %v", e.After, e.Err)
}

func (e *RateLimitedError) Unwrap() error { return e.Err }

// PermanentError is a refusal that no retry changes (the bot was blocked,
// the chat is gone): the delivery gives up at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "refused: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as a permanent refusal.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err is a permanent refusal.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
