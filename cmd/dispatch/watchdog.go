package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/watchdog"
)

// watchdogCmd is the agent watchdog a cluster node starts beside its
// agents (internal/watchdog); not for people to run.
func watchdogCmd() *cobra.Command {
	return &cobra.Command{
		Use:    watchdog.Command,
		Short:  "Kill a cluster node's agents when the node stops renewing their deadline (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			watchdog.Main(os.Stdin, cmd.ErrOrStderr())
		},
	}
}
