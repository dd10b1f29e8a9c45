package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func channelsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "channels",
		Short:   "Chat-app channels (Telegram): connection and delivery state",
		Example: "  dispatch channels list",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the channels: connected, last update, backlog, failed deliveries, rate-limited until (and, with several nodes, the node holding each)",
		Example: "  dispatch channels list\n  dispatch channels list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			chs, err := c.Channels(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return printJSON(w, chs)
			}
			if len(chs) == 0 {
				fmt.Fprintln(w, "no channels configured")
				return nil
			}
			// With several nodes: the node holding each channel, and "-"
			// for what only that node knows.
			cluster := false
			for _, ch := range chs {
				cluster = cluster || ch.Node != ""
			}
			head := []string{"CHANNEL", "KIND", "BOT", "CONNECTED", "LAST UPDATE", "BACKLOG", "FAILED", "RATE LIMITED UNTIL", "ERROR"}
			if cluster {
				head = append(head, "NODE")
			}
			t := newTable(head...)
			for _, ch := range chs {
				var connected any = ch.Connected
				if ch.Remote {
					connected = "-"
				}
				row := []any{ch.Name, ch.Kind, ch.Bot, connected, dash(ch.LastUpdate), ch.Backlog, ch.Failed,
					dash(ch.RateLimitedUntil), cell(ch.Error, 60)}
				if cluster {
					row = append(row, dash(ch.Node))
				}
				t.add(row...)
			}
			return t.print(w)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
