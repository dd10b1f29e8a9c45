// Command dispatch keeps many long-lived AI agent conversations healthy:
// `dispatch daemon` runs the supervisor; the other commands talk to it over
// its control socket.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// exitError carries a specific exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(code)
	}
}

type globals struct {
	configPath string
}

func (g *globals) load() (config.Config, error) {
	return config.Load(g.configPath)
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "dispatch",
		Short:         "Keep many long-lived AI agent conversations healthy, 24/7",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", os.Getenv("DISPATCH_CONFIG"), "config file (YAML); default: built-in defaults")
	root.AddCommand(
		daemonCmd(g),
		statusCmd(g),
		sendCmd(g),
		sessionsCmd(g),
		queueCmd(g),
		logsCmd(g),
		doctorCmd(g),
		benchCmd(g),
		eventsCmd(g),
		webhooksCmd(g),
		webCmd(g),
	)
	return root
}
