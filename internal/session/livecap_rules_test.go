package session

import (
	"slices"
	"testing"
	"time"
)

func TestVerdictWaiting(t *testing.T) {
	r := testRules()
	s := Snapshot{ChatID: "a", State: Waiting}
	v := r.Verdict(s, Queue{Depth: 3, Oldest: t0}, t0.Add(time.Hour), false)
	if !v.Healthy || v.Reason != ReasonLiveCap || v.Restart {
		t.Fatalf("waiting verdict = %+v, want healthy, live_cap, no restart", v)
	}
	if r.Stranded(s, Queue{Depth: 3, Oldest: t0}, t0.Add(time.Hour), false) {
		t.Fatal("a waiting session counts as stranded")
	}
	if r.Reapable(s, Queue{}, t0.Add(10*time.Hour)) || r.Hibernatable(s, Queue{}) {
		t.Fatal("a waiting session (no agent) is reapable or hibernatable")
	}
}

func TestHibernatable(t *testing.T) {
	r := testRules()
	with := func(chat string, f func(*Snapshot)) Snapshot { s := live(chat); f(&s); return s }
	none := func(*Snapshot) {}
	tests := []struct {
		name string
		snap Snapshot
		q    Queue
		want bool
	}{
		{"idle live session", live("a"), Queue{}, true},
		{"recently active is still hibernatable", with("a", func(s *Snapshot) { s.LastActivity = t0.Add(time.Hour) }), Queue{}, true},
		{"busy", with("a", func(s *Snapshot) { s.State, s.Busy = Busy, true }), Queue{}, false},
		{"messages waiting", live("a"), Queue{Depth: 1, Oldest: t0}, false},
		{"held by the API gate", with("a", func(s *Snapshot) { s.Held = true }), Queue{}, false},
		{"restart pending", with("a", func(s *Snapshot) { s.RestartPending = true }), Queue{}, false},
		{"store error", with("a", func(s *Snapshot) { s.StoreError = "x" }), Queue{}, false},
		{"starting", with("a", func(s *Snapshot) { s.State = Starting }), Queue{}, false},
		{"no agent", with("a", func(s *Snapshot) { s.ProcUp = false }), Queue{}, false},
		{"stopped", with("a", func(s *Snapshot) { s.State, s.ProcUp = Stopped, false }), Queue{}, false},
		{"paused", with("a", func(s *Snapshot) { s.State = Paused }), Queue{}, false},
		{"failed", with("a", func(s *Snapshot) { s.State = Failed }), Queue{}, false},
		{"master", with("master", none), Queue{}, false},
		{"-bg suffix", with("nightly-bg", none), Queue{}, false},
		{"flagged exempt", with("a", func(s *Snapshot) { s.ExemptFlag = true }), Queue{}, false},
	}
	for _, tt := range tests {
		if got := r.Hibernatable(tt.snap, tt.q); got != tt.want {
			t.Errorf("%s: Hibernatable = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestHibernateFirst(t *testing.T) {
	at := func(chat string, d time.Duration) Snapshot {
		s := live(chat)
		s.LastActivity = t0.Add(d)
		return s
	}
	c := []Snapshot{at("d", 3*time.Minute), at("b", time.Minute), at("c", time.Minute), at("a", 2*time.Minute), at("e", -time.Hour)}
	slices.SortFunc(c, HibernateFirst)
	var got []string
	for _, s := range c {
		got = append(got, s.ChatID)
	}
	if want := []string{"e", "b", "c", "a", "d"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v (least recently active first, ties by chat)", got, want)
	}
}

func TestStartsBefore(t *testing.T) {
	w := func(chat string, oldest, since time.Duration) Waiter {
		x := Waiter{Chat: chat, Since: t0.Add(since)}
		if oldest >= 0 {
			x.Oldest = t0.Add(oldest)
		}
		return x
	}
	ws := []Waiter{
		w("late", 5*time.Second, 0),
		w("unknown", -1, 0),
		w("early", time.Second, 9*time.Second),
		w("tie-b", 2*time.Second, 2*time.Second),
		w("tie-a", 2*time.Second, 2*time.Second),
		w("tie-first", 2*time.Second, time.Second),
	}
	slices.SortFunc(ws, StartsBefore)
	var got []string
	for _, x := range ws {
		got = append(got, x.Chat)
	}
	if want := []string{"early", "tie-first", "tie-a", "tie-b", "late", "unknown"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestMemoryRule(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		limit, rss uint64
		want       MemoryAction
	}{
		{0, 100 << 30, MemoryOK}, // no limit
		{2048 * mib, 190 * mib, MemoryOK},
		{2048 * mib, 2048 * mib, MemoryOK},
		{2048 * mib, 2048*mib + 1, MemoryRestart},
		{2048 * mib, 4096 * mib, MemoryRestart},
		{2048 * mib, 4096*mib + 1, MemoryKill},
		{2048 * mib, 12 << 30, MemoryKill},
	}
	for _, tt := range tests {
		r := testRules()
		r.MaxAgentRSS = tt.limit
		if got := r.Memory(tt.rss); got != tt.want {
			t.Errorf("limit %d rss %d: %s, want %s", tt.limit, tt.rss, got, tt.want)
		}
	}
}
