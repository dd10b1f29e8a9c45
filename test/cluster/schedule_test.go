package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
	"github.com/dispatchd/dispatch/internal/testutil/schedtest"
)

// Schedules are fired by one node of several (the holder of the schedules
// role): each firing is one message and one schedule_fired event, not one
// per node; when that node is killed, another takes the role and fires
// what falls due next, and what fell due while nobody held it.
//
// The schedules are written into the database by the test (the HTTP API
// for schedules is served by the API package).
func TestClusterSchedulesOneNode(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	st, err := postgres.OpenStore(ctx, dsn, clock.Real{}, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	created := time.Now().UTC().Truncate(time.Second)
	ats := map[string]time.Time{}
	add := func(prefix string, first time.Time, n int) {
		for i := range n {
			id := fmt.Sprintf("s_%s%02d", prefix, i)
			at := first.Add(time.Duration(i) * time.Second)
			ats[id] = at
			r := store.ScheduleRecord{ID: id, ChatID: "sched-" + prefix, Text: "firing " + id, CatchUp: schedule.CatchUpAll,
				Spec: schedule.Spec{Kind: schedule.At, Expr: at.Format(time.RFC3339), Created: created}}
			if err := st.CreateSchedule(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("a", created.Add(10*time.Second), 8)
	var ds []*daemontest.Daemon
	for i := range 2 {
		ds = append(ds, daemontest.Start(t, nodeOpts(dsn, i, nil)))
	}
	finished := func(prefix string) bool {
		rs, err := st.Schedules(ctx, "sched-"+prefix)
		if err != nil {
			return false
		}
		for _, r := range rs {
			if !r.Finished {
				return false
			}
		}
		return len(rs) > 0
	}
	daemontest.WaitFor(t, func() bool { return finished("a") }, 60*time.Second, "the first schedules fired")

	holder := -1
	for i, d := range ds {
		if strings.Contains(d.ManagerLog(), "this node fires the schedules now") {
			if holder >= 0 {
				t.Fatalf("nodes %d and %d both took the schedules role", holder, i)
			}
			holder = i
		}
	}
	if holder < 0 {
		t.Fatal("no node took the schedules role")
	}
	ds[holder].Kill9()
	// Due from now on: some fall while nobody holds the role (until the
	// lease ends), the others after the takeover.
	add("b", time.Now().UTC().Truncate(time.Second).Add(time.Second), 6)
	other := ds[1-holder]
	daemontest.WaitFor(t, func() bool { return finished("b") }, 60*time.Second, "the other node fired the schedules after the kill")
	if !strings.Contains(other.ManagerLog(), "this node fires the schedules now") {
		t.Error("the other node did not log taking the role")
	}

	schedtest.FiredOnce(t, st, []string{"sched-a", "sched-b"}, ats)
}
