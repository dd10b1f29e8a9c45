package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func eventsCmd(g *globals) *cobra.Command {
	var (
		after, chat, types string
		follow, asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the event feed (replies, dead letters, session and API changes); --follow keeps printing",
		Long: `Print the event feed, oldest first: replies (one per turn, with the turn id and
the ids of the messages it answered), dead letters, failed, recovered and reset
sessions, and API outages. --after SEQ starts after that event; --follow waits
for new events (a long poll, woken the moment one is committed) until
interrupted. --json prints one event per line as JSON.`,
		Example: `  dispatch events
  dispatch events --follow --types reply,dead_letter
  dispatch events --after 1200 --chat alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := url.Values{}
			if after != "" {
				n, err := events.SeqOf(after)
				if err != nil {
					return fmt.Errorf("--after: %w", err)
				}
				v.Set("after", strconv.FormatInt(n, 10))
			}
			if chat != "" {
				if err := wire.ValidChatID(chat); err != nil {
					return err
				}
				v.Set("chat", chat)
			}
			if types != "" {
				if _, err := events.ParseTypes(types); err != nil {
					return err
				}
				v.Set("types", types)
			}
			v.Set("limit", strconv.Itoa(events.MaxLimit))
			c, err := connect(g, 0, 0) // each request has its own deadline
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if follow {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				v.Set("wait", "60s")
			}
			out := cmd.OutOrStdout()
			for {
				rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
				page, err := c.Events(rctx, v)
				cancel()
				if err != nil {
					if follow && ctx.Err() != nil {
						return nil // interrupted
					}
					var ae *client.Error
					if errors.As(err, &ae) && ae.Status == http.StatusGone {
						return fmt.Errorf("%s (start again with --after and the oldest kept seq minus one)", ae.Msg)
					}
					return err
				}
				for _, ev := range page.Events {
					if err := printEvent(out, ev, asJSON); err != nil {
						return err
					}
				}
				v.Set("after", strconv.FormatInt(page.Next, 10))
				if len(page.Events) == 0 && !follow {
					return nil
				}
			}
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "start after this event (its seq, or its id evt-SEQ)")
	cmd.Flags().StringVar(&chat, "chat", "", "only this chat's events")
	_ = cmd.RegisterFlagCompletionFunc("chat", completeChats(g, -1))
	cmd.Flags().StringVar(&types, "types", "", "only these types, comma-separated (reply,dead_letter,session_failed,session_recovered,session_reset,api_down,api_up)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as one line of JSON")
	return cmd
}

// printEvent writes one event: a JSON line, or a human line whose text
// parts are made safe for a terminal.
func printEvent(w io.Writer, ev events.Event, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var detail string
	switch ev.Type {
	case events.Reply:
		detail = fmt.Sprintf("turn %s, messages %s: %s", ev.TurnID, strings.Join(ev.MessageIDs, ","), clipText(ev.Text, 200))
	case events.DeadLetter:
		detail = fmt.Sprintf("message %s: %s", ev.MessageID, ev.Error)
	default:
		detail = ev.Reason
	}
	_, err := fmt.Fprintf(w, "%d  %s  %s  %s  %s\n", ev.Seq, ev.At.UTC().Format(time.RFC3339),
		ev.Type, termsafe.Line(ev.ChatID), termsafe.Line(detail))
	return err
}

// clipText cuts s to at most n characters (whole runes), with an ellipsis.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
