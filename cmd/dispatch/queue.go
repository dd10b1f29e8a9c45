package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

// queueStates are the values of queue list --state.
var queueStates = []string{"pending", "inflight", "dead", "done"}

func queueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List and operate queued and dead messages",
		Example: `  dispatch queue list --state dead
  dispatch queue show 0b5c…
  dispatch queue retry 0b5c…`,
	}
	var (
		f      client.QueueFilter
		asJSON bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List waiting and dead messages, then the last few answered (texts clipped; see queue show)",
		Long: `List the messages still to be answered or given up, oldest first: pending,
in flight and dead ones; then the last few answered ones (from the event
feed). --state done lists every answered message still kept, and --state
pending, inflight or dead one state only. Text, reply and error are clipped
to fit a line; "dispatch queue show ID" prints one message in full. CREATED
is how long ago the message was accepted.

--json prints a JSON array with the full fields of the listed messages
(without --state: pending, in flight and dead; text, reply and error
clipped at 200 characters, "truncated" says so).`,
		Example: `  dispatch queue list
  dispatch queue list --state done --chat alice
  dispatch queue list --state dead
  dispatch queue list --chat alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			if asJSON {
				return listJSON(cmd.Context(), c, f, out)
			}
			now := time.Now()
			t := newTable("ID", "CHAT", "STATE", "ATTEMPTS", "CREATED", "TEXT", "REPLY", "ERROR")
			err = c.EachQueued(cmd.Context(), f, func(m wire.ListedOut) error {
				t.add(m.ID, cell(m.ChatID, 24), m.State, m.Attempts, age(m.CreatedAt, now),
					cell(m.Text, 30), cell(m.Reply, 30), cell(m.Error, 40))
				return nil
			})
			if err != nil {
				return err
			}
			if t.len() == 0 {
				none := "no messages"
				if f.State == "" {
					none = "no pending, in-flight or dead messages"
				}
				fmt.Fprintln(out, none+filterText(f))
			} else if err := t.print(out); err != nil {
				return err
			}
			if f.State != "" {
				return nil
			}
			return printAnswered(cmd.Context(), c, f.Chat, out, now)
		},
	}
	list.Flags().StringVar(&f.Chat, "chat", "", "only this chat")
	list.Flags().StringVar(&f.State, "state", "", "only this state: "+strings.Join(queueStates, ", "))
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	_ = list.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(queueStates, cobra.ShellCompDirectiveNoFileComp))
	_ = list.RegisterFlagCompletionFunc("chat", completeChats(g, -1))

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one message in full, with its reply or error",
		Long: `Show one message in full: chat, client id, state, attempts, the turn that
answered it, its text, and its reply or error. Every field is escaped for the
terminal.`,
		Example:           "  dispatch queue show 0b5c8f3e-…",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeMessages(g, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			m, err := c.QueueMessage(cmd.Context(), args[0])
			if err != nil {
				if client.IsNotFound(err) {
					return fmt.Errorf("no message with id %q", termsafe.Line(args[0]))
				}
				return err
			}
			return printMessage(cmd.OutOrStdout(), m, time.Now())
		},
	}

	idOp := func(op, short, example string) *cobra.Command {
		return &cobra.Command{
			Use:               op + " ID",
			Short:             short,
			Example:           example,
			Args:              cobra.ExactArgs(1),
			ValidArgsFunction: completeMessages(g, "dead"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect(g, 30*time.Second, 0)
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.QueueOp(cmd.Context(), op, args[0]); err != nil {
					if client.IsNotFound(err) {
						return fmt.Errorf("no dead message with id %q", termsafe.Line(args[0]))
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", op, termsafe.Line(args[0]))
				return nil
			},
		}
	}
	cmd.AddCommand(list, show,
		idOp("retry", "Put a dead message back in line", "  dispatch queue retry 0b5c8f3e-…"),
		idOp("drop", "Delete a dead message (logged)", "  dispatch queue drop 0b5c8f3e-…"))
	return cmd
}

// recentAnswered is how many answered messages queue list shows after the
// waiting ones.
const recentAnswered = 5

// printAnswered lists the messages answered by the last few replies (of
// chat, when given), newest last, with a hint at --state done.
func printAnswered(ctx context.Context, c *client.Client, chat string, out io.Writer, now time.Time) error {
	v := url.Values{"tail": {strconv.Itoa(recentAnswered)}, "types": {string(events.Reply)}}
	if chat != "" {
		v.Set("chat", chat)
	}
	page, err := c.Events(ctx, v)
	if err != nil {
		return err
	}
	t := newTable("ID", "CHAT", "ANSWERED", "REPLY")
	for _, ev := range page.Events {
		for _, id := range ev.MessageIDs {
			t.add(id, cell(ev.ChatID, 24), age(ev.At.UTC().Format(time.RFC3339Nano), now), cell(ev.Text, 50))
		}
	}
	if t.len() == 0 {
		fmt.Fprintln(out, "no answered messages yet (they are listed with --state done while kept)")
		return nil
	}
	fmt.Fprintln(out, "\nrecently answered (every one still kept: dispatch queue list --state done):")
	return t.print(out)
}

func filterText(f client.QueueFilter) string {
	var parts []string
	if f.State != "" {
		parts = append(parts, "in state "+f.State)
	}
	if f.Chat != "" {
		parts = append(parts, "of chat "+termsafe.Line(f.Chat))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

// listJSON prints every listed message as one JSON array, page by page.
func listJSON(ctx context.Context, c *client.Client, f client.QueueFilter, out io.Writer) error {
	first := true
	if _, err := io.WriteString(out, "["); err != nil {
		return err
	}
	err := c.EachQueued(ctx, f, func(m wire.ListedOut) error {
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
func printMessage(w io.Writer, m wire.MessageOut, now time.Time) error {
	orNone := func(s string) string {
		if s == "" {
			return "-"
		}
		return termsafe.Line(s)
	}
	fmt.Fprintf(w, "id:        %s\n", termsafe.Line(m.ID))
	fmt.Fprintf(w, "chat:      %s\n", termsafe.Line(m.ChatID))
	fmt.Fprintf(w, "client_id: %s\n", orNone(m.ClientID))
	fmt.Fprintf(w, "state:     %s\n", termsafe.Line(m.State))
	fmt.Fprintf(w, "attempts:  %d (failures %d)\n", m.Attempts, m.Failures)
	fmt.Fprintf(w, "turn_id:   %s\n", orNone(m.TurnID))
	fmt.Fprintf(w, "created:   %s (%s)\n", termsafe.Line(m.CreatedAt), age(m.CreatedAt, now))
	fmt.Fprintf(w, "updated:   %s (%s)\n", termsafe.Line(m.UpdatedAt), age(m.UpdatedAt, now))
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
