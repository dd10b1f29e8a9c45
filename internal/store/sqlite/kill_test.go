package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
)

// TestAcceptedSurvivesKill9 runs a child process that accepts messages as
// fast as it can and prints each id once Accept returns, kills it with
// SIGKILL mid-stream, and checks that every id it printed is stored.
func TestAcceptedSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "dispatch.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
	cmd.Env = append(os.Environ(), "STORE_KILL_CHILD_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []string
	for sc.Scan() {
		acked = append(acked, sc.Text())
		if len(acked) == 300 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acked only %d messages", len(acked))
	}

	s, err := openStore(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Fatalf("acked message %s lost: %v", id, err)
		}
	}
	t.Logf("%d acked messages all present after kill -9", len(acked))
}

// TestKillChild is the child of TestAcceptedSurvivesKill9; it does nothing
// in a normal run.
func TestKillChild(t *testing.T) {
	path := os.Getenv("STORE_KILL_CHILD_DB")
	if path == "" {
		t.Skip("helper process for TestAcceptedSurvivesKill9")
	}
	s, err := openStore(path, clock.Real{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := make(chan string)
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, _, err := s.acceptID(context.Background(), "c", "x", id); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				w <- id
			}
		}()
	}
	for id := range w {
		fmt.Println(id)
	}
}
