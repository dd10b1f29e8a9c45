package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/daemon"
)

func daemonCmd(g *globals) *cobra.Command {
	var logStderr bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the daemon in the foreground",
		Long: `Run the daemon in the foreground until SIGTERM or SIGINT: the first signal
lets in-flight turns finish (up to shutdown_timeout), stops every agent and
exits 0; a second one exits at once.

It logs to its files under <state_dir>/logs (read them with dispatch logs);
--log-stderr echoes the manager log to standard error too (for a service
manager's journal). Warnings that need an operator — such as an agent
command that is not installed — always go to standard error as well.`,
		Example: `  dispatch daemon --config /etc/dispatch.yaml
  DISPATCH_CONFIG=dispatch.yaml dispatch daemon --log-stderr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if w := config.ReadableSecrets(g.configFile(), cfg); w != "" {
				fmt.Fprintln(os.Stderr, "dispatch: warning:", w)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			go func() {
				s := <-sigs
				fmt.Fprintf(os.Stderr, "dispatch: %s: shutting down (send it again to exit at once)\n", s)
				cancel()
				s = <-sigs
				fmt.Fprintf(os.Stderr, "dispatch: %s again: exiting now\n", s)
				os.Exit(1)
			}()
			return daemon.Run(ctx, cfg, daemon.Options{Version: version, Stderr: os.Stderr, EchoLogs: logStderr, ConfigFile: g.configFile()})
		},
	}
	cmd.Flags().BoolVar(&logStderr, "log-stderr", false, "echo the manager log to standard error too")
	return cmd
}
