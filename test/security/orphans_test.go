package security

import (
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/otheruser"
)

// The daemon runs as root here. Another user's process that carries the
// agent marker (today's and the old state-dir one) survives the start-up
// sweep that kills a killed daemon's leftovers.
func TestOrphanKillerSparesAnotherUsersProcess(t *testing.T) {
	otheruser.Require(t)
	d := daemontest.Start(t, daemontest.Set(quiet))
	mark := d.Marker()
	if len(mark) != 32 || mark == d.StateDir {
		t.Fatalf("agent marker %q: want 32 random hex digits", mark)
	}
	d.Term()
	victim := otheruser.Command(t, "env", supervisor.MarkerVar+"="+mark, "DISPATCH_STATE_DIR="+d.StateDir, "sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { victim.Wait(); close(exited) }()
	defer victim.Process.Kill()
	daemontest.WaitFor(t, func() bool {
		p, ok := daemontest.ReadProc(victim.Process.Pid)
		return ok && p.Cmdline == "sleep 60"
	}, 5*time.Second, "the other user's sleep")
	d.Restart()
	select {
	case <-exited:
		t.Fatal("the daemon killed another user's process")
	case <-time.After(time.Second):
	}
	if m := d.Marker(); m != mark {
		t.Errorf("the marker changed across a restart: %q, then %q", mark, m)
	}
}
