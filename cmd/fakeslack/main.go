// Command fakeslack runs the fake Slack of package internal/fakeslack on
// loopback, for trying a Slack app (or dispatch's Slack channel) against it
// by hand or from tests in another process:
//
//	fakeslack -addr 127.0.0.1:8091
//	curl -d '{"user":"U0ANN","text":"hello"}' http://127.0.0.1:8091/_control/message
//	curl -H 'Authorization: Bearer xoxb-1-fake-bot-token' -d channel=D0ANN -d text=hi http://127.0.0.1:8091/api/chat.postMessage
//	curl http://127.0.0.1:8091/_control/channels/D0ANN
//
// It prints the Web API URL (for api_url or slack.OptionAPIURL), the bot
// token and the app-level token, one per line, and runs until interrupted.
// The control endpoints (see fakeslack.Server.ControlHandler) are served
// on the same port; since mode refuse refuses them too, either switch with
// for=DURATION or give -control-addr to serve them on a listener of their
// own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeserver"
	"github.com/dispatchd/dispatch/internal/fakeslack"
)

func main() { fakeserver.Main("fakeslack", run) }

// run parses args, serves until ctx is done, and prints the URL and tokens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fakeslack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8091", "loopback `host:port` to serve on (port 0 picks one)")
	botToken := fs.String("bot-token", fakeslack.DefaultBotToken, "xoxb- bot `token` the Web API accepts")
	appToken := fs.String("app-token", fakeslack.DefaultAppToken, "xapp- app-level `token` apps.connections.open accepts")
	team := fs.String("team", fakeslack.DefaultTeamID, "the workspace's `id`")
	ackTimeout := fs.Duration("ack-timeout", 3*time.Second, "how long an events_api envelope waits for its acknowledgement before it is sent again")
	modeName := fs.String("mode", string(fakeslack.ModeUp), "initial `mode`: up, refuse or hang")
	controlAddr := fs.String("control-addr", "", "optional loopback `host:port` for the control endpoints alone (they are always on -addr too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode, err := fakeslack.ParseMode(*modeName)
	if err != nil {
		return err
	}
	if *ackTimeout <= 0 {
		return errors.New("-ack-timeout must be positive")
	}
	s := fakeslack.New(fakeslack.WithBotToken(*botToken), fakeslack.WithAppToken(*appToken),
		fakeslack.WithTeam(*team, fakeslack.DefaultTeamName), fakeslack.WithAckTimeout(*ackTimeout))
	defer s.Close()
	s.EnableControl()
	s.SetMode(mode)
	if err := s.Start(*addr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.APIURL())
	fmt.Fprintln(stdout, "bot token: "+s.BotToken())
	fmt.Fprintln(stdout, "app token: "+s.AppToken())

	if *controlAddr != "" {
		stopControl, err := fakeserver.ServeControl(*controlAddr, s.ControlHandler(), fakeslack.ControlPrefix, stdout)
		if err != nil {
			return err
		}
		defer stopControl()
	}
	<-ctx.Done()
	return nil
}
