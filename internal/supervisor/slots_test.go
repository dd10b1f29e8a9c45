package supervisor

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
)

func TestSlots(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type step struct {
		op     string // acquire, release
		chat   string
		oldest int  // seconds after t0; -1: unknown
		want   bool // acquire: granted
	}
	tests := []struct {
		name  string
		max   int
		steps []step
		live  []string
		line  []string
		woken []string
	}{
		{
			name:  "no cap grants everything",
			max:   0,
			steps: []step{{"acquire", "a", 1, true}, {"acquire", "b", 2, true}, {"acquire", "c", 3, true}},
			live:  []string{"a", "b", "c"},
		},
		{
			name:  "a holder asking again keeps its slot",
			max:   1,
			steps: []step{{"acquire", "a", 1, true}, {"acquire", "a", 1, true}},
			live:  []string{"a"},
		},
		{
			name: "at the cap the newcomer waits",
			max:  2,
			steps: []step{
				{"acquire", "a", 1, true}, {"acquire", "b", 2, true}, {"acquire", "c", 3, false},
			},
			live: []string{"a", "b"},
			line: []string{"c"},
		},
		{
			name: "a freed slot goes to the waiter with the oldest message",
			max:  1,
			steps: []step{
				{"acquire", "a", 1, true},
				{"acquire", "late", 9, false},
				{"acquire", "early", 5, false},
				{"acquire", "unknown", -1, false},
				{"release", "a", 0, false},
			},
			live:  []string{"early"},
			line:  []string{"late", "unknown"},
			woken: []string{"early"},
		},
		{
			name: "the woken waiter finds the slot its own; nobody overtakes",
			max:  1,
			steps: []step{
				{"acquire", "a", 1, true},
				{"acquire", "w", 2, false},
				{"release", "a", 0, false},
				{"acquire", "newcomer", 0, false},
				{"acquire", "w", 2, true},
			},
			live:  []string{"w"},
			line:  []string{"newcomer"},
			woken: []string{"w"},
		},
		{
			name: "a waiter that no longer needs its slot passes it on",
			max:  1,
			steps: []step{
				{"acquire", "a", 1, true},
				{"acquire", "w1", 2, false},
				{"acquire", "w2", 3, false},
				{"release", "a", 0, false},  // w1 gets it
				{"release", "w1", 0, false}, // w1 had nothing left to do
			},
			live:  []string{"w2"},
			woken: []string{"w1", "w2"},
		},
		{
			name: "leaving the line",
			max:  1,
			steps: []step{
				{"acquire", "a", 1, true},
				{"acquire", "w", 2, false},
				{"release", "w", 0, false},
				{"release", "a", 0, false},
			},
		},
		{
			name:  "releasing what one does not hold does nothing",
			max:   1,
			steps: []step{{"acquire", "a", 1, true}, {"release", "zzz", 0, false}},
			live:  []string{"a"},
		},
		{
			name: "asking again in line keeps one's place, learns the oldest message",
			max:  1,
			steps: []step{
				{"acquire", "a", 1, true},
				{"acquire", "x", -1, false},
				{"acquire", "y", 7, false},
				{"acquire", "x", 4, false},
				{"release", "a", 0, false},
			},
			live:  []string{"x"},
			line:  []string{"y"},
			woken: []string{"x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			shorts := 0
			s := NewSlots(tt.max, clk, func() { shorts++ })
			var woken []string
			for i, st := range tt.steps {
				clk.Advance(time.Second)
				switch st.op {
				case "acquire":
					var oldest time.Time
					if st.oldest >= 0 {
						oldest = at(st.oldest)
					}
					chat := st.chat
					if got := s.Acquire(chat, oldest, func() { woken = append(woken, chat) }); got != st.want {
						t.Fatalf("step %d: Acquire(%s) = %t, want %t", i, chat, got, st.want)
					}
				case "release":
					s.Release(st.chat)
				}
			}
			var live []string
			for _, c := range []string{"a", "b", "c", "w", "w1", "w2", "x", "y", "early", "late", "unknown", "newcomer"} {
				if s.Holds(c) {
					live = append(live, c)
				}
			}
			slices.Sort(live)
			want := slices.Clone(tt.live)
			slices.Sort(want)
			if !slices.Equal(live, want) || s.Live() != len(want) {
				t.Errorf("holders %v (Live %d), want %v", live, s.Live(), want)
			}
			var line []string
			for _, w := range s.Line() {
				line = append(line, w.Chat)
			}
			if !slices.Equal(line, tt.line) || s.Waiting() != len(tt.line) {
				t.Errorf("line %v, want %v", line, tt.line)
			}
			if !slices.Equal(woken, tt.woken) {
				t.Errorf("woken %v, want %v", woken, tt.woken)
			}
			if tt.max > 0 && s.Live() > tt.max {
				t.Errorf("%d holders over the cap of %d", s.Live(), tt.max)
			}
		})
	}
}

// TestSlotsClose: once closed (shutdown), nobody new gets a slot and
// nobody in line is woken.
func TestSlotsClose(t *testing.T) {
	s := NewSlots(1, clock.NewFake(time.Now()), nil)
	woken := 0
	if !s.Acquire("a", time.Time{}, nil) || s.Acquire("w", time.Now(), func() { woken++ }) {
		t.Fatal("setup")
	}
	s.Close()
	if !s.Acquire("a", time.Time{}, nil) {
		t.Error("a holder lost its slot at Close")
	}
	s.Release("a")
	if woken != 0 || s.Holds("w") {
		t.Errorf("after Close a released slot went to the line (woken %d)", woken)
	}
	if s.Acquire("new", time.Time{}, nil) {
		t.Error("after Close a new chat got a slot")
	}
}

// TestSlotsConcurrent: many sessions asking and giving back at once never
// get more than max slots, and everyone in line is served in the end.
func TestSlotsConcurrent(t *testing.T) {
	const max, chats = 5, 60
	var over atomic.Bool
	s := NewSlots(max, clock.Real{}, nil)
	var wg sync.WaitGroup
	var inside atomic.Int32
	for i := range chats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chat := fmt.Sprint("c", i)
			woke := make(chan struct{}, 1)
			for !s.Acquire(chat, time.Now(), func() { woke <- struct{}{} }) {
				<-woke
			}
			if n := inside.Add(1); n > max {
				over.Store(true)
			}
			runtime.Gosched() // hold the slot while others contend for it
			inside.Add(-1)
			s.Release(chat)
		}()
	}
	wg.Wait()
	if over.Load() {
		t.Fatal("more than max sessions held a slot at once")
	}
	if s.Live() != 0 || s.Waiting() != 0 {
		t.Fatalf("left: %d live, %d waiting", s.Live(), s.Waiting())
	}
}
