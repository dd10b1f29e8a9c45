package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/termsafe"
)

func queueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "List and operate queued and dead messages"}
	var (
		chat, state string
		asJSON      bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List pending, in-flight and dead messages (texts shortened; see queue show)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return listJSON(cmd.Context(), c, chat, state, out)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCHAT\tSTATE\tATTEMPTS\tCREATED\tERROR\tTEXT")
			err = eachQueued(cmd.Context(), c, chat, state, func(m api.ListedOut) error {
				_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", cell(m.ID, 40), cell(m.ChatID, 30), m.State,
					m.Attempts, m.CreatedAt, cell(m.Error, 60), cell(m.Text, 40))
				return err
			})
			return errors.Join(err, tw.Flush())
		},
	}
	list.Flags().StringVar(&chat, "chat", "", "only this chat")
	list.Flags().StringVar(&state, "state", "", "only this state: pending, inflight, dead or done")
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one message in full, with its reply or error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second)
			if err != nil {
				return err
			}
			var m api.MessageOut
			if err := c.do(cmd.Context(), "GET", "/v1/queue/"+urlEscape(args[0]), nil, &m); err != nil {
				if isNotFound(err) {
					return fmt.Errorf("no message with id %q", args[0])
				}
				return err
			}
			return printMessage(cmd.OutOrStdout(), m)
		},
	}

	idOp := func(use, short, path string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect(g, 30*time.Second)
				if err != nil {
					return err
				}
				if err := c.do(cmd.Context(), "POST", path, api.IDRequest{ID: args[0]}, nil); err != nil {
					if isNotFound(err) {
						return fmt.Errorf("no dead message with id %q", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", use, termsafe.Line(args[0]))
				return nil
			},
		}
	}
	cmd.AddCommand(list, show,
		idOp("retry", "Put a dead message back in line", "/v1/queue/retry"),
		idOp("drop", "Delete a dead message (logged)", "/v1/queue/drop"))
	return cmd
}

// eachQueued pages through GET /v1/queue, calling fn for every message.
func eachQueued(ctx context.Context, c *client, chat, state string, fn func(api.ListedOut) error) error {
	after := ""
	for {
		q := "/v1/queue?limit=" + strconv.Itoa(api.MaxQueuePage) + "&chat=" + urlEscape(chat) + "&state=" + urlEscape(state)
		if after != "" {
			q += "&after=" + urlEscape(after)
		}
		var page api.QueuePage
		if err := c.do(ctx, "GET", q, nil, &page); err != nil {
			return err
		}
		for _, m := range page.Messages {
			if err := fn(m); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		after = page.Next
	}
}

// listJSON prints every listed message as one JSON array, page by page.
func listJSON(ctx context.Context, c *client, chat, state string, out io.Writer) error {
	first := true
	if _, err := io.WriteString(out, "["); err != nil {
		return err
	}
	err := eachQueued(ctx, c, chat, state, func(m api.ListedOut) error {
		b, err := json.MarshalIndent(m, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if first {
			sep, first = "\n  ", false
		}
		_, err = fmt.Fprintf(out, "%s%s", sep, b)
		return err
	})
	if err != nil {
		return err
	}
	end := "\n]\n"
	if first {
		end = "]\n"
	}
	_, err = io.WriteString(out, end)
	return err
}

// printMessage shows one message for a person: every field escaped, texts
// on lines of their own.
func printMessage(w io.Writer, m api.MessageOut) error {
	fmt.Fprintf(w, "id:        %s\n", termsafe.Line(m.ID))
	fmt.Fprintf(w, "chat:      %s\n", termsafe.Line(m.ChatID))
	fmt.Fprintf(w, "state:     %s\n", termsafe.Line(m.State))
	fmt.Fprintf(w, "attempts:  %d (failures %d)\n", m.Attempts, m.Failures)
	fmt.Fprintf(w, "created:   %s\n", m.CreatedAt)
	fmt.Fprintf(w, "updated:   %s\n", m.UpdatedAt)
	fmt.Fprintf(w, "text:\n%s\n", indent(termsafe.Text(m.Text)))
	if m.Reply != "" {
		fmt.Fprintf(w, "reply:\n%s\n", indent(termsafe.Text(m.Reply)))
	}
	if m.Error != "" {
		fmt.Fprintf(w, "error:\n%s\n", indent(termsafe.Text(m.Error)))
	}
	return nil
}

func indent(s string) string {
	out := make([]byte, 0, len(s)+16)
	out = append(out, "  "...)
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' && i+1 < len(s) {
			out = append(out, "  "...)
		}
	}
	return string(out)
}

// cell is s escaped for one table cell and shortened to n runes.
func cell(s string, n int) string {
	s = termsafe.Line(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
