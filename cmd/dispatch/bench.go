package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/bench"
)

func benchCmd(_ *globals) *cobra.Command {
	var (
		o      bench.Options
		phases string
		check  bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput, latency and memory with the echo agent, against the targets",
		Long: `bench measures dispatch through its unix-socket HTTP API with the echo
agent and prints the figures next to their targets:

  throughput  --clients concurrent clients accept messages for --duration
              (or --messages): durable accepts per second and their latency
  latency     one chat, one message at a time: send → done, found by
              polling GET /v1/messages/{id} every --poll
  sessions    --sessions chats created by one message each: the daemon's
              RSS growth per 1,000 sessions, and GET /v1/status time

By default it starts its own daemon (this executable, agent.kind echo, a
fresh temporary state dir) and stops it afterwards. --socket measures a
running daemon instead; the chats it creates stay there. --in-process runs
the daemon inside the bench, which --cpuprofile needs to profile it.

It is a measurement: it exits 0 whatever the figures, 2 if the bench itself
broke, and with --check 1 when a target is missed.`,
		Example: `  dispatch bench
  dispatch bench --phases latency --samples 200
  dispatch bench --socket ~/.local/state/dispatch/dispatch.sock --phases throughput --duration 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for p := range strings.SplitSeq(phases, ",") {
				if p = strings.TrimSpace(p); p != "" {
					o.Phases = append(o.Phases, p)
				}
			}
			o.Version = version
			if !asJSON {
				o.Progress = cmd.ErrOrStderr()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.Run(ctx, o)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return &exitError{2, errors.New("bench: interrupted")}
				}
				return &exitError{2, fmt.Errorf("bench: %w", err)}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = printJSON(out, rep)
			} else {
				err = bench.Print(out, rep)
			}
			if err != nil {
				return &exitError{2, err}
			}
			if check && !rep.Passed() {
				return &exitError{1, errors.New("bench: a target was missed")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Socket, "socket", "", "measure the daemon on this control socket instead of starting one")
	f.BoolVar(&o.InProcess, "in-process", false, "run the daemon inside the bench process (for profiling)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured phases here (implies --in-process)")
	f.StringVar(&o.MutexProfile, "mutexprofile", "", "write a mutex contention profile of the measured phases here (implies --in-process)")
	f.StringVar(&o.BlockProfile, "blockprofile", "", "write a blocking profile of the measured phases here (implies --in-process)")
	f.StringVar(&o.Trace, "trace", "", "write an execution trace of the measured phases here, for go tool trace (implies --in-process)")
	f.StringVar(&o.StoreDSN, "store-dsn", "", "start the daemon on this PostgreSQL database instead of SQLite")
	f.IntVar(&o.Chats, "chats", 0, "spread the throughput phase's messages over this many fresh chats (0: one chat per client)")
	f.IntVar(&o.Clients, "clients", 8, "concurrent clients (throughput and session creation)")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "length of the throughput phase")
	f.IntVar(&o.Messages, "messages", 0, "send this many messages in the throughput phase instead of running for --duration")
	f.IntVar(&o.Samples, "samples", 1000, "send → done round trips in the latency phase")
	f.DurationVar(&o.Poll, "poll", 200*time.Microsecond, "poll interval of the latency phase")
	f.IntVar(&o.Sessions, "sessions", 5000, "sessions created in the sessions phase")
	f.IntVar(&o.StatusRuns, "status-runs", 5, "how many times GET /v1/status is timed")
	f.StringVar(&phases, "phases", strings.Join(bench.AllPhases, ","), "phases to run, comma-separated")
	f.StringVar(&o.LogLevel, "log-level", "", "log level of the started daemon (default: the daemon's default, info)")
	f.BoolVar(&o.Keep, "keep", false, "keep the started daemon's temporary state dir")
	f.BoolVar(&check, "check", false, "exit 1 when a figure misses its target")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
