package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/termsafe"
)

func configCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "config",
		Short:   "Inspect the configuration",
		Example: "  dispatch config show",
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration as YAML, secrets masked",
		Long: `Print the effective configuration — the config file (--config, else
$DISPATCH_CONFIG) over the built-in defaults, paths resolved — as YAML with
every key. Every secret shows as "(masked)": the password in store.dsn,
webhook secrets, the credentials (user:password@), secret-looking query
parameters (token=, key=, sig= …) and token-like path segments of webhook
URLs, and agent.env values whose names (…KEY, …TOKEN, …SECRET, …PASSWORD)
or values (sk-…, ghp_…, a URL's password) look secret; token files are
named, never read. contrib/dispatch.example.yaml explains every key.`,
		Example: `  dispatch config show
  dispatch config show --config /etc/dispatch.yaml > effective.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			b, err := cfg.ShowYAML()
			if err != nil {
				return err
			}
			if f := g.configFile(); f != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "# effective configuration: %s over the defaults\n", termsafe.Line(f))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "# effective configuration: the defaults (no --config, no $DISPATCH_CONFIG)")
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.AddCommand(show)
	return cmd
}
