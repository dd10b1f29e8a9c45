package sqlite

import (
	"context"
	"testing"
	"time"
)

func TestOldestPending(t *testing.T) {
	s, clk := openTest(t)
	ctx := context.Background()
	accept(t, s, "a", "a1")
	clk.Advance(time.Minute)
	accept(t, s, "a", "a2")
	accept(t, s, "b", "b1")
	claim(t, s, "a", 1) // a1 in flight: a's oldest waiting is a2
	for chat, want := range map[string]time.Time{"a": t0.Add(time.Minute), "b": t0.Add(time.Minute), "nobody": {}} {
		got, err := s.OldestPending(ctx, chat)
		if err != nil || !got.Equal(want) {
			t.Errorf("OldestPending(%q) = %v, %v; want %v", chat, got, err, want)
		}
	}
}
