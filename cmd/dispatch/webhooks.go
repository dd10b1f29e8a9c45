package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func webhooksCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "webhooks",
		Short:   "Webhook endpoints: their delivery state, and retrying failed deliveries",
		Example: "  dispatch webhooks list\n  dispatch webhooks retry bridge",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the webhook endpoints with their delivery state and failed deliveries",
		Example: "  dispatch webhooks list\n  dispatch webhooks list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			hooks, err := c.Webhooks(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, hooks)
			}
			if len(hooks) == 0 {
				fmt.Fprintln(w, "no webhook endpoints configured")
				return nil
			}
			t := newTable("ENDPOINT", "URL", "EVENTS", "PENDING", "FAILED", "DELIVERED", "LAG", "LAST ERROR")
			for _, e := range hooks {
				t.add(e.Name, e.URL, strings.Join(e.Events, ","), e.Pending, e.Failed, e.Delivered,
					human(seconds(e.LagSeconds)), cell(e.LastError, 60))
			}
			if err := t.print(w); err != nil {
				return err
			}
			for _, e := range hooks {
				if len(e.FailedDeliveries) == 0 {
					continue
				}
				fmt.Fprintf(w, "\nfailed deliveries to %s (dispatch webhooks retry %s):\n", termsafe.Line(e.Name), termsafe.Line(e.Name))
				t := newTable("EVENT", "CHAT", "ATTEMPTS", "GAVE UP", "ERROR")
				for _, d := range e.FailedDeliveries {
					t.add(d.EventID, d.ChatID, d.Attempts, d.At, cell(d.Error, 80))
				}
				if err := t.print(w); err != nil {
					return err
				}
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	retry := &cobra.Command{
		Use:     "retry ENDPOINT",
		Short:   "Send an endpoint's failed deliveries again, in order, with a fresh retry budget",
		Example: "  dispatch webhooks retry bridge",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.RetryWebhook(cmd.Context(), args[0])
			if err != nil {
				if client.IsNotFound(err) {
					return fmt.Errorf("unknown webhook endpoint %q (see dispatch webhooks list)", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retry: %d failed deliveries to %s back in line\n", n, termsafe.Line(args[0]))
			return nil
		},
	}
	cmd.AddCommand(list, retry)
	return cmd
}

// printWebhookLine adds the webhooks' state to the status header.
func printWebhookLine(w io.Writer, sts []wire.EndpointStatus) {
	for _, e := range sts {
		fmt.Fprintf(w, "webhook %s: %d pending, %d failed, lag %s\n", termsafe.Line(e.Name), e.Pending, e.Failed,
			human(seconds(e.LagSeconds)))
	}
}
