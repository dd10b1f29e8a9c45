package fakeserver

import (
	"testing"
	"time"
)

func TestRevertGenerations(t *testing.T) {
	var r Revert
	if !r.Change(0) {
		t.Fatal("an unconditional Change was refused")
	}
	fired := make(chan uint64, 1)
	r.After(time.Millisecond, func(gen uint64) { fired <- gen })
	gen := <-fired
	if !r.Change(gen) {
		t.Fatal("the switch back of the current generation was refused")
	}
	if r.Change(gen) {
		t.Fatal("a switch back of an old generation was allowed")
	}
	r.After(time.Hour, func(uint64) { t.Error("a stopped switch back ran") })
	if !r.Change(0) || r.timer != nil {
		t.Fatal("Change left the pending switch back armed")
	}
	r.After(0, func(uint64) { t.Error("After(0) armed a switch back") })
	if r.timer != nil {
		t.Fatal("After(0) armed a timer")
	}
	r.Stop()
}
