package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Exit statuses of `send --wait` beyond 0 (answered) and 1 (not accepted).
const (
	exitTimedOut = 3 // no reply in time; the message stays queued
	exitGivenUp  = 4 // the message is dead, or its session failed
)

// sendWaitReady is how long send keeps trying while the daemon is still
// starting: `dispatch daemon &` followed at once by a send just works.
const sendWaitReady = 5 * time.Second

func sendCmd(g *globals) *cobra.Command {
	var (
		clientID string
		wait     bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "send CHAT TEXT",
		Short: "Accept a message for a chat (prints its id; with --wait, the reply)",
		Long: `Accept a message for a chat. It prints the message's id once the message is
durably stored. TEXT "-" reads the text from standard input (up to 1 MiB).
Quote a text of several words: send takes exactly two arguments.

--client-id gives the message your own key, scoped to the chat: sending the
same chat and client id again stores nothing and prints the original id; the
same pair with another text is refused.

With --wait it prints the reply instead and exits
  0 answered, 1 not accepted, 3 timed out (the message stays queued),
  4 given up: the message is dead, or its session failed (reason on stderr).

A daemon that is still starting is waited for (see --wait-ready).`,
		Example: `  dispatch send alice "hello there"
  dispatch send alice "what is on today?" --wait --timeout 2m
  dispatch send family-group - < note.txt
  dispatch send bridge-42 "hi" --client-id 1017`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 2 {
				return fmt.Errorf("send takes CHAT and TEXT, got %d arguments: quote a text of several words, e.g. dispatch send %s %q",
					len(args), termsafe.Line(args[0]), strings.Join(args[1:], " "))
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		ValidArgsFunction: completeChats(g, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("timeout") && !wait {
				return errors.New("--timeout needs --wait")
			}
			text, err := textArg(cmd, args[1])
			if err != nil {
				return err
			}
			c, err := connect(g, 30*time.Second, sendWaitReady)
			if err != nil {
				return err
			}
			defer c.Close()
			acc, err := c.Send(cmd.Context(), wire.MessageIn{ChatID: args[0], Text: text, ClientID: clientID})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if acc.Paused {
				fmt.Fprintln(cmd.ErrOrStderr(), pausedNote(args[0], acc.ID))
			}
			if !wait {
				fmt.Fprintln(out, acc.ID)
				return nil
			}
			return waitReply(cmd.Context(), c, acc.ID, timeout, out, cmd.ErrOrStderr(), acc.Paused)
		},
	}
	cmd.Flags().StringVar(&clientID, "client-id", "", "your own key for the message, unique within the chat: a resend with the same key is stored once")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the reply and print it instead of the id")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: how long to wait for the reply")
	return cmd
}

// pausedNote says that chat is paused and how to let message id go.
func pausedNote(chat, id string) string {
	return fmt.Sprintf("dispatch: chat %s is paused: message %s waits until `dispatch sessions resume %s`",
		termsafe.Line(chat), id, shellArg(chat))
}

// waitReply polls the message until it is done (prints the reply), until
// its outcome is known to be no reply (dead, or its session failed: exit
// 4), or until the timeout passes (exit 3; the message stays queued). When
// the chat is (or becomes) paused it says so once on errOut; told says it
// was said already.
func waitReply(ctx context.Context, c *client.Client, id string, timeout time.Duration, out, errOut io.Writer, told bool) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		m, err := c.Message(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case m.State == "done":
			fmt.Fprintln(out, termsafe.Text(m.Reply))
			return nil
		case m.State == "dead":
			return &exitError{exitGivenUp, fmt.Errorf("message %s is dead after %d attempts: %s (`dispatch queue retry %s` tries it again)",
				id, m.Attempts, termsafe.Line(m.Error), id)}
		case m.Held != "":
			return &exitError{exitGivenUp, fmt.Errorf("message %s will not be answered until an operator acts (%s); it stays queued: `dispatch sessions restart %s` starts the session again",
				id, termsafe.Line(m.Held), shellArg(m.ChatID))}
		case m.Paused && !told:
			told = true
			fmt.Fprintln(errOut, pausedNote(m.ChatID, id))
		}
		if time.Now().After(deadline) {
			return &exitError{exitTimedOut, fmt.Errorf("no reply to message %s within %s (state %s); it stays queued", id, timeout, m.State)}
		}
		time.Sleep(delay)
		delay = min(2*delay, 250*time.Millisecond)
	}
}
