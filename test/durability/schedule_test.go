package durability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/schedtest"
)

// openDB opens the stopped daemon's database from the test, and closes it
// with its files private again (the daemon refuses files others may read).
func openDB(t *testing.T, d *daemontest.Daemon) (*sqlite.Store, func()) {
	t.Helper()
	path := filepath.Join(d.StateDir, "dispatch.db")
	st, err := sqlite.Open(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	return st, func() {
		_ = st.Close()
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			if err := os.Chmod(f, 0o600); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
}

// TestScheduleKill9: one-off schedules fall due two a second while the
// daemon is killed with SIGKILL at random moments and restarted; every
// firing is accepted exactly once (one message with its client id, one
// schedule_fired event) and none is lost or reported missed.
//
// The schedules are written into the database while the daemon is
// stopped (the HTTP API for schedules is served by the API package).
func TestScheduleKill9(t *testing.T) {
	seed := crashSeed(t)
	t.Logf("seed %d (replay with DURABILITY_SEED=%d)", seed, seed)
	d := daemontest.Start(t, opts(quietChecks))
	if code, _ := d.Term(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	const n = 40
	st, closeDB := openDB(t, d)
	created := time.Now().UTC().Truncate(time.Second)
	first := created.Add(6 * time.Second)
	ats := map[string]time.Time{}
	for i := range n {
		id := fmt.Sprintf("s_kill%02d", i)
		at := first.Add(time.Duration(i/2) * time.Second)
		ats[id] = at
		r := store.ScheduleRecord{ID: id, ChatID: "sched-kill", Text: "firing " + id, CatchUp: schedule.CatchUpAll,
			Spec: schedule.Spec{Kind: schedule.At, Expr: at.Format(time.RFC3339), Created: created}}
		if err := st.CreateSchedule(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	closeDB()
	last := first.Add(n / 2 * time.Second)

	d.Restart()
	rng := rand.New(rand.NewPCG(seed, 7))
	kills := 0
	for time.Now().Before(last.Add(2 * time.Second)) {
		time.Sleep(time.Duration(200+rng.IntN(900)) * time.Millisecond)
		d.Kill9()
		kills++
		d.Restart()
	}
	t.Logf("%d kills between %s and %s", kills, first.Format(time.TimeOnly), last.Format(time.TimeOnly))
	// Let the last run deal with everything, then look.
	time.Sleep(3 * time.Second)
	if code, _ := d.Term(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	st, closeDB = openDB(t, d)
	defer closeDB()
	ctx := context.Background()
	schedtest.FiredOnce(t, st, []string{"sched-kill"}, ats)
	for id, at := range ats {
		r, err := st.Schedule(ctx, id)
		if err != nil || !r.Finished || !r.LastFired.Equal(at) {
			t.Errorf("%s: %+v, %v", id, r, err)
		}
	}
}
