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
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/webhook"
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
				if err := api.ValidChatID(chat); err != nil {
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
			cfg, err := g.load()
			if err != nil {
				return err
			}
			c := newClient(cfg.SocketPath(), 0) // each request has its own deadline
			ctx := cmd.Context()
			if follow {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				v.Set("wait", "60s")
			}
			out := cmd.OutOrStdout()
			for {
				var page api.EventsOut
				rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
				err := c.do(rctx, "GET", "/v1/events?"+v.Encode(), nil, &page)
				cancel()
				if err != nil {
					if follow && ctx.Err() != nil {
						return nil // interrupted
					}
					var ae *apiError
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
		ev.Type, safeText(ev.ChatID), safeText(detail))
	return err
}

// safeText replaces control characters (escape sequences included) with
// visible escapes, so a chat id or a reply cannot drive the terminal.
func safeText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func webhooksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webhooks", Short: "Webhook endpoints: their delivery state, and retrying failed deliveries"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the webhook endpoints with their delivery state and failed deliveries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second)
			if err != nil {
				return err
			}
			var out struct {
				Webhooks []webhook.EndpointStatus `json:"webhooks"`
			}
			if err := c.do(cmd.Context(), "GET", "/v1/webhooks", nil, &out); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, out.Webhooks)
			}
			if len(out.Webhooks) == 0 {
				fmt.Fprintln(w, "no webhook endpoints configured")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ENDPOINT\tURL\tEVENTS\tPENDING\tFAILED\tDELIVERED\tLAG\tLAST ERROR")
			for _, e := range out.Webhooks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", safeText(e.Name), safeText(e.URL), strings.Join(e.Events, ","),
					e.Pending, e.Failed, e.Delivered, human(time.Duration(e.LagSeconds*float64(time.Second))), clipText(safeText(e.LastError), 60))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, e := range out.Webhooks {
				if len(e.FailedDeliveries) == 0 {
					continue
				}
				fmt.Fprintf(w, "\nfailed deliveries to %s (dispatch webhooks retry %s):\n", safeText(e.Name), safeText(e.Name))
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "EVENT\tCHAT\tATTEMPTS\tGAVE UP\tERROR")
				for _, d := range e.FailedDeliveries {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", d.EventID, safeText(d.ChatID), d.Attempts, d.At, clipText(safeText(d.Error), 80))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	retry := &cobra.Command{
		Use:   "retry ENDPOINT",
		Short: "Send an endpoint's failed deliveries again, in order, with a fresh retry budget",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second)
			if err != nil {
				return err
			}
			var out struct {
				Retried int `json:"retried"`
			}
			if err := c.do(cmd.Context(), "POST", "/v1/webhooks/retry", api.WebhookRetry{Endpoint: args[0]}, &out); err != nil {
				if isNotFound(err) {
					return fmt.Errorf("unknown webhook endpoint %q (see dispatch webhooks list)", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retry: %d failed deliveries to %s back in line\n", out.Retried, safeText(args[0]))
			return nil
		},
	}
	cmd.AddCommand(list, retry)
	return cmd
}

// printWebhookLine adds the webhooks' state to the status header.
func printWebhookLine(w io.Writer, sts []webhook.EndpointStatus) {
	for _, e := range sts {
		fmt.Fprintf(w, "webhook %s: %d pending, %d failed, lag %s\n", safeText(e.Name), e.Pending, e.Failed,
			human(time.Duration(e.LagSeconds*float64(time.Second))))
	}
}

// clipText cuts s to at most n characters (whole runes), with an ellipsis.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
