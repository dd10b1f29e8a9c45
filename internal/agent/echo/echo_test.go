package echo

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/agent"
	"github.com/dispatchd/dispatch/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEcho(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	p, err := New(clk).Start(context.Background(), agent.Spec{ChatID: "c", SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.SessionID() != "s1" || p.Pid() != 0 {
		t.Errorf("SessionID %q Pid %d", p.SessionID(), p.Pid())
	}
	clk.Advance(time.Minute)
	res, err := p.Turn(context.Background(), []string{"a", "b"})
	if err != nil || res.Text != "a\nb" || res.SessionID != "s1" {
		t.Fatalf("Turn = %+v, %v", res, err)
	}
	if !p.LastOutput().Equal(clk.Now()) {
		t.Errorf("LastOutput = %v, want %v", p.LastOutput(), clk.Now())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Turn(ctx, []string{"x"}); err == nil {
		t.Error("Turn with a done ctx succeeded")
	}

	for range 2 {
		if err := p.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed")
	}
	if p.ExitErr() != nil {
		t.Errorf("ExitErr = %v", p.ExitErr())
	}
	if _, err := p.Turn(context.Background(), []string{"x"}); agent.KindOf(err) != agent.Exited {
		t.Errorf("Turn after Stop = %v, want exited", err)
	}
}

func TestGeneratedID(t *testing.T) {
	p, err := New(nil).Start(context.Background(), agent.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.SessionID()) != 36 {
		t.Errorf("SessionID = %q", p.SessionID())
	}
}

func BenchmarkTurn(b *testing.B) {
	p, _ := New(nil).Start(context.Background(), agent.Spec{SessionID: "s"})
	ctx := context.Background()
	texts := []string{"hello"}
	for b.Loop() {
		if _, err := p.Turn(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
}
