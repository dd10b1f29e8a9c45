// Command dispatch keeps many long-lived AI agent conversations healthy:
// `dispatch daemon` runs the supervisor; the other commands talk to it over
// its control socket (or its TCP address) with internal/client.
//
// One command per file: daemon.go, status.go, send.go, sessions.go,
// queue.go, logs.go, events.go, webhooks.go, permissions.go, channels.go,
// schedule.go, doctor.go, bench.go, config.go, version.go; completion.go completes chat and message ids from
// the running daemon; table.go prints the tables.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/client"
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
func (e *exitError) Unwrap() error { return e.err }

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

// globals are the flags every command takes.
type globals struct {
	configPath string
	url        string
	tokenFile  string
	caFile     string
	waitReady  time.Duration
	stderr     io.Writer // the running command's standard error
}

// configFile is the config file in use: --config, else $DISPATCH_CONFIG,
// else none (built-in defaults).
func (g *globals) configFile() string {
	if g.configPath != "" {
		return g.configPath
	}
	return os.Getenv("DISPATCH_CONFIG")
}

func (g *globals) load() (config.Config, error) {
	return config.Load(g.configFile())
}

// defaultWaitReady marks --wait-ready as not given: the command's own
// default applies.
const defaultWaitReady = -1

// connect loads the config and returns a client for the daemon: its
// control socket, or --url. waitReady is the command's default for
// --wait-ready.
func connect(g *globals, timeout, waitReady time.Duration) (*client.Client, error) {
	if g.waitReady != defaultWaitReady {
		waitReady = g.waitReady
	}
	o := client.Options{Timeout: timeout, WaitReady: waitReady}
	if g.stderr != nil {
		o.Waiting = func(where string, wait time.Duration) {
			fmt.Fprintf(g.stderr, "dispatch: no daemon at %s yet; waiting up to %s for it to start\n", where, wait)
		}
	}
	if g.url != "" {
		o.URL = g.url
		if g.tokenFile == "" {
			return nil, errors.New("--url needs --token-file (the daemon's api.token_file)")
		}
		tok, err := api.LoadToken("--token-file", g.tokenFile)
		if err != nil {
			return nil, err
		}
		o.Token = tok
		if g.caFile != "" {
			pem, err := os.ReadFile(g.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file: %s holds no PEM certificate", g.caFile)
			}
			o.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	} else {
		cfg, err := g.load()
		if err != nil {
			return nil, err
		}
		o.Socket = cfg.SocketPath()
	}
	return client.New(o)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "dispatch",
		Short: "Keep many long-lived AI agent conversations healthy, 24/7",
		Long: `dispatch keeps many long-lived AI agent conversations healthy: every chat gets
its own agent session, and dispatch routes each message to it, watches its
health, restarts it when it breaks and never loses a message.

"dispatch daemon" runs the daemon; the other commands talk to it over its
control socket (<state_dir>/dispatch.sock), or over TCP with --url.`,
		Example: `  dispatch daemon --config dispatch.yaml &
  dispatch send alice "hello there" --wait
  dispatch status`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			g.stderr = cmd.ErrOrStderr()
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "config file (YAML); when not given, $DISPATCH_CONFIG names it, and without that the built-in defaults apply")
	pf.StringVar(&g.url, "url", "", "talk to the daemon over TCP at this address (http:// or https://HOST:PORT, its api.listen) instead of its control socket")
	pf.StringVar(&g.tokenFile, "token-file", "", "with --url: the file holding the bearer token (mode 0600)")
	pf.StringVar(&g.caFile, "ca-file", "", "with an https:// --url: trust this PEM certificate (authority) instead of the system's")
	pf.DurationVar(&g.waitReady, "wait-ready", defaultWaitReady, "how long to keep trying while the daemon is still starting (its socket not there yet)")
	pf.Lookup("wait-ready").DefValue = "5s for send, 0 for the other commands"
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
		permissionsCmd(g),
		channelsCmd(g),
		scheduleCmd(g),
		configCmd(g),
		versionCmd(),
		webCmd(g),
		watchdogCmd(),
	)
	return root
}
