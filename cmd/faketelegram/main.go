// Command faketelegram runs the fake Telegram Bot API of package
// internal/faketelegram on loopback, for trying a bot (or dispatch's
// Telegram channel) against it by hand or from tests in another process:
//
//	faketelegram -addr 127.0.0.1:8090
//	curl -d '{"from":{"id":42,"first_name":"Ann"},"text":"hello"}' http://127.0.0.1:8090/_control/message
//	curl 'http://127.0.0.1:8090/bot123456:fake-telegram-token/getUpdates?timeout=5'
//	curl -d chat_id=42 -d text='<b>hi</b>' -d parse_mode=HTML http://127.0.0.1:8090/bot123456:fake-telegram-token/sendMessage
//	curl http://127.0.0.1:8090/_control/chats/42
//	curl -X POST 'http://127.0.0.1:8090/_control/mode?m=502&for=10s'
//
// It prints the API's base URL (for api_url or bot.WithServerURL) and the
// bot token, one per line, and runs until interrupted. The control
// endpoints (see faketelegram.Server.ControlHandler) are served on the same
// port; since mode refuse refuses them too, either switch with for=DURATION
// or give -control-addr to serve them on a listener of their own.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/dispatchd/dispatch/internal/fakeserver"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

func main() { fakeserver.Main("faketelegram", run) }

// run parses args, serves until ctx is done, and prints the URL and token.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("faketelegram", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "loopback `host:port` to serve the API on (port 0 picks one)")
	token := fs.String("token", faketelegram.DefaultToken, "bot `token` the API accepts")
	username := fs.String("username", "fake_dispatch_bot", "the bot's `username`, as getMe returns it")
	modeName := fs.String("mode", string(faketelegram.ModeUp), "initial `mode`: up, refuse, 502 or hang")
	firstUpdate := fs.Int64("first-update-id", 1, "update_id of the first update")
	controlAddr := fs.String("control-addr", "", "optional loopback `host:port` for the control endpoints alone (they are always on -addr too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode, err := faketelegram.ParseMode(*modeName)
	if err != nil {
		return err
	}
	s := faketelegram.New(faketelegram.WithToken(*token), faketelegram.WithUsername(*username), faketelegram.WithFirstUpdateID(*firstUpdate))
	defer s.Close()
	s.EnableControl()
	s.SetMode(mode)
	if err := s.Start(*addr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, s.URL())
	fmt.Fprintln(stdout, "token: "+s.Token())

	if *controlAddr != "" {
		stopControl, err := fakeserver.ServeControl(*controlAddr, s.ControlHandler(), faketelegram.ControlPrefix, stdout)
		if err != nil {
			return err
		}
		defer stopControl()
	}
	<-ctx.Done()
	return nil
}
