package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/wire"
)

// Shell completion (cobra's "dispatch completion bash|zsh|fish|powershell")
// asks the running daemon for chat and message ids. A daemon that is not
// running completes nothing; it never waits long.

const completionTimeout = 2 * time.Second

// completeFrom completes with what list returns from the running daemon,
// when the command has exactly pos positional arguments already (-1: a
// flag's value, any number). No daemon, or a slow one, completes nothing.
func completeFrom(g *globals, pos int, list func(ctx context.Context, c *client.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if pos >= 0 && len(args) != pos {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := connect(g, completionTimeout, 0)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		out, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeChats completes the chat ids of the daemon's sessions as the
// positional argument number pos (-1: a flag's value).
func completeChats(g *globals, pos int) cobra.CompletionFunc {
	return completeFrom(g, pos, func(ctx context.Context, c *client.Client) ([]string, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range st.Sessions {
			out = append(out, cobra.CompletionWithDesc(s.ChatID, s.State))
		}
		return out, nil
	})
}

// completeMessages completes the ids of the daemon's messages in state
// ("" any), the first page of them.
func completeMessages(g *globals, state string) cobra.CompletionFunc {
	return completeFrom(g, 0, func(ctx context.Context, c *client.Client) ([]string, error) {
		page, err := c.QueuePage(ctx, client.QueueFilter{State: state}, "", wire.MaxQueuePage)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, m := range page.Messages {
			out = append(out, cobra.CompletionWithDesc(m.ID, m.ChatID+" "+m.State))
		}
		return out, nil
	})
}
