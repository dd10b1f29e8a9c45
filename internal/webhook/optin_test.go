package webhook

import (
	"testing"

	"github.com/dispatchd/dispatch/internal/events"
)

// TestWantsOptIn: an endpoint that names no types gets every type but
// progress; one that names progress gets it.
func TestWantsOptIn(t *testing.T) {
	all := Endpoint{Name: "all"}
	named := Endpoint{Name: "p", Events: []events.Type{events.Progress, events.PermissionRequest}}
	for _, tc := range []struct {
		ep   Endpoint
		t    events.Type
		want bool
	}{
		{all, events.Reply, true},
		{all, events.PermissionRequest, true},
		{all, events.PermissionDecided, true},
		{all, events.Progress, false},
		{named, events.Progress, true},
		{named, events.PermissionRequest, true},
		{named, events.Reply, false},
	} {
		if got := tc.ep.wants(tc.t); got != tc.want {
			t.Errorf("%s wants %s = %v, want %v", tc.ep.Name, tc.t, got, tc.want)
		}
	}
}
