package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/doctor"
)

func doctorCmd(g *globals) *cobra.Command {
	var requireDaemon bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the installation: config, agent, AI API, state dir, disk, store, daemon, logs",
		Long: `Check the installation and print one line per check: ✔ passed, ✘ failed
(with a hint), ! a warning, - neutral (the daemon is not running). Exits 1
if any check failed. A daemon that is not running is not a failure unless
--require-daemon is given.`,
		Example: `  dispatch doctor
  dispatch doctor --config /etc/dispatch.yaml --require-daemon`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := doctor.Run(cmd.Context(), cmd.OutOrStdout(), g.configFile(), config.Load,
				doctor.Env{RequireDaemon: requireDaemon})
			if !rep.OK() {
				return &exitError{code: 1, err: fmt.Errorf("doctor: %d check(s) failed", rep.Failed)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&requireDaemon, "require-daemon", false, "fail when the daemon is not running")
	return cmd
}
