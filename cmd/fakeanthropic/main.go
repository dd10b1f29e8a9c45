// Command fakeanthropic runs the fake Anthropic Messages API of package
// internal/fakeapi on loopback, for trying the Claude Code CLI (or dispatch)
// against it by hand or from tests in another process:
//
//	fakeanthropic -addr 127.0.0.1:8089 -mode ok
//	ANTHROPIC_BASE_URL=http://127.0.0.1:8089 ANTHROPIC_API_KEY=dummy claude -p hello
//	curl -X POST 'http://127.0.0.1:8089/_control/mode?m=529'
//	curl http://127.0.0.1:8089/_control/requests
//	curl -X POST 'http://127.0.0.1:8089/_control/tool_use?name=Bash&input={"command":"touch+x"}'
//
// A prompt line `TOOL_USE Bash {"command":"touch x"}` makes the fake's
// model call that tool too; the request that brings the tool's result back
// is answered "fake reply after tools: Bash ok: …" (or "error: …").
//
// It prints the base URL as its first line of output and runs until
// interrupted. The control endpoints (see fakeapi.Server.ControlHandler) are
// served on the same port; since ModeRefuse refuses them too, either switch
// with for=DURATION (mode=refuse&for=5s) or give -control-addr to serve them
// on a listener of their own.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/fakeserver"
)

func main() { fakeserver.Main("fakeanthropic", run) }

// run parses args, serves until ctx is done, and prints the URLs to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakeanthropic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8089", "loopback `host:port` to serve the API on (port 0 picks one)")
	modeName := fs.String("mode", string(fakeapi.ModeOK), "initial `mode`: "+fmt.Sprint(fakeapi.Modes))
	slow := fs.Duration("slow", fakeapi.DefaultSlow, "delay of mode slow")
	controlAddr := fs.String("control-addr", "", "optional loopback `host:port` for the control endpoints alone (they are always on -addr too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode, err := fakeapi.ParseMode(*modeName)
	if err != nil {
		return err
	}

	s := fakeapi.New()
	defer s.Close()
	s.SetSlow(*slow)
	s.EnableControl()
	s.SetMode(mode)
	if err := s.Start(*addr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.URL())

	if *controlAddr != "" {
		stopControl, err := fakeserver.ServeControl(*controlAddr, s.ControlHandler(), fakeapi.ControlPrefix, stdout)
		if err != nil {
			return err
		}
		defer stopControl()
	}
	<-ctx.Done()
	return nil
}
