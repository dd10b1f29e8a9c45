package lifecycle

import (
	"log/slog"
	"testing"

	"github.com/dispatchd/dispatch/internal/events"
)

func TestNamesAreUniqueAndKnown(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Kinds() {
		n := k.String()
		if n == "unknown" || seen[n] {
			t.Errorf("kind %d: name %q (unknown or repeated)", k, n)
		}
		seen[n] = true
	}
	if len(seen) != len(kindNames) {
		t.Errorf("Kinds() lists %d kinds, %d have names", len(seen), len(kindNames))
	}
	seen = map[string]bool{}
	for c := NoCause; c <= Lease; c++ {
		if n := c.String(); n == "unknown" || seen[n] {
			t.Errorf("cause %d: name %q", c, n)
		} else {
			seen[n] = true
		}
	}
}

func TestRestartLabel(t *testing.T) {
	for _, tc := range []struct {
		c    Cause
		want string
	}{
		{Dead, "dead"}, {Errors, "errors"}, {Stuck, "stuck"}, {StaleQueue, "stale_queue"},
		{Panicked, "panic"}, {StartFail, "start"}, {Context, "context"}, {Memory, "memory"},
		{Operator, "other"}, {CleanExit, "other"}, {Broken, "other"}, {NoCause, "other"},
	} {
		if got := tc.c.RestartLabel(); got != tc.want {
			t.Errorf("%s.RestartLabel() = %q, want %q", tc.c, got, tc.want)
		}
	}
	want := []string{"dead", "errors", "stuck", "stale_queue", "panic", "start", "context", "memory", "other"}
	got := RestartLabels()
	if len(got) != len(want) {
		t.Fatalf("RestartLabels() = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("RestartLabels() = %q, want %q", got, want)
		}
	}
}

func TestLevel(t *testing.T) {
	for _, k := range Kinds() {
		want := slog.LevelInfo
		if k == Failure || k == ResumeFailed || k == DeadLetter {
			want = slog.LevelWarn
		}
		if k.Level() != want {
			t.Errorf("%s.Level() = %s, want %s", k, k.Level(), want)
		}
	}
}

func TestFeed(t *testing.T) {
	for _, tc := range []struct {
		ev     Event
		typ    events.Type
		reason string
		ok     bool
	}{
		{Event{Kind: DeadLetter, Cause: Attempts, Chat: "a", Detail: "message m1: boom"}, events.DeadLetter, "", true},
		{Event{Kind: Failure, Cause: RestartLimit, Chat: "a", Detail: "5 restarts"}, events.SessionFailed, "5 restarts", true},
		{Event{Kind: Failure, Cause: Auth, Chat: "a"}, "", "", false},
		{Event{Kind: ResumeFailed, Cause: Resumption, Chat: "a"}, events.SessionReset, events.ResetResumeFailed, true},
		{Event{Kind: Restart, Cause: Context, Chat: "a"}, events.SessionReset, events.ResetContextTooLong, true},
		{Event{Kind: Restart, Cause: Dead, Chat: "a"}, "", "", false},
		{Event{Kind: Start, Chat: "a"}, "", "", false},
	} {
		fe, ok := tc.ev.Feed()
		if ok != tc.ok || fe.Type != tc.typ || fe.Reason != tc.reason || (ok && fe.ChatID != tc.ev.Chat) {
			t.Errorf("%s/%s: Feed() = %+v, %t; want %s %q %t", tc.ev.Kind, tc.ev.Cause, fe, ok, tc.typ, tc.reason, tc.ok)
		}
	}
}

func TestAttrsLineFormat(t *testing.T) {
	a := Event{Kind: Reap, Cause: Idle, Chat: "c", Detail: "idle timeout"}.Attrs()
	if len(a) != 3 || a[0].Key != "event" || a[0].Value.String() != "reap" || a[1].Key != "chat" || a[2].Key != "reason" || a[2].Value.String() != "idle timeout" {
		t.Errorf("Attrs() = %v", a)
	}
}
