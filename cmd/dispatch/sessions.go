package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func sessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List and operate sessions",
		Example: `  dispatch sessions list
  dispatch sessions restart alice --clean
  dispatch sessions exempt nightly-report`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the sessions",
		Long: `List the sessions, most recently active first (the same table as status).
EXEMPT says whether a session is exempt from idle reaping: "yes" for the
master session and chats ending in the exempt suffix (-bg), "flag" when an
operator set it with "dispatch sessions exempt". In --json, "exempt" is true
for any of these reasons and "exempt_flag" only for the operator's flag.`,
		Example: `  dispatch sessions list
  dispatch sessions list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := fetchStatus(cmd.Context(), g)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st.Sessions)
			}
			if len(st.Sessions) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no sessions")
				return nil
			}
			if err := sessionTable(st.Sessions).print(cmd.OutOrStdout()); err != nil {
				return err
			}
			return printReasons(cmd.OutOrStdout(), st.Sessions)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	chatOp := func(op, short, long, example string, flags func(*cobra.Command) func() wire.ChatRequest) *cobra.Command {
		done := func(req wire.ChatRequest) string {
			switch {
			case op == "exempt" && req.Off:
				return "exempt flag cleared"
			case op == "exempt":
				return "exempt from idle reaping"
			case op == "restart" && req.Clean:
				return "restarted with a new conversation"
			}
			return map[string]string{"kill": "killed", "pause": "paused", "resume": "resumed", "restart": "restarted"}[op]
		}
		var extra func() wire.ChatRequest
		c := &cobra.Command{
			Use:               op + " CHAT",
			Short:             short,
			Long:              long,
			Example:           example,
			Args:              cobra.ExactArgs(1),
			ValidArgsFunction: completeChats(g, 0),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := connect(g, time.Minute, 0)
				if err != nil {
					return err
				}
				defer cl.Close()
				req := wire.ChatRequest{}
				if extra != nil {
					req = extra()
				}
				req.ChatID = args[0]
				if err := cl.SessionOp(cmd.Context(), op, req); err != nil {
					if client.IsNotFound(err) {
						return fmt.Errorf("unknown chat %q", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", termsafe.Line(args[0]), done(req))
				return nil
			},
		}
		if flags != nil {
			extra = flags(c)
		}
		return c
	}
	kill := chatOp("kill", "Stop a session's agent (keeps its session_id); waiting messages go to a new agent at once",
		`Stop a session's agent process (its whole process group), for a wedged or
misbehaving agent. The saved session_id is kept; waiting messages are handed
to a new agent right away. To hold a chat on purpose, use pause.`,
		"  dispatch sessions kill alice", nil)
	pause := chatOp("pause", "Hold a chat: accept and keep its messages, hand none to the agent",
		`Hold a chat: its messages are accepted and kept, none is handed to the agent,
and its state is "paused" (healthy, reason paused) until resume.`,
		"  dispatch sessions pause alice", nil)
	resume := chatOp("resume", "Let a paused chat's messages go, in order", "",
		"  dispatch sessions resume alice", nil)
	restart := chatOp("restart", "Restart a session (resumes unless --clean); clears failed",
		`Restart a session's agent, resuming its conversation (--clean starts a new
one). It also clears the failed state of a session past its restart limit.`,
		"  dispatch sessions restart alice\n  dispatch sessions restart alice --clean",
		func(c *cobra.Command) func() wire.ChatRequest {
			clean := c.Flags().Bool("clean", false, "start a new conversation instead of resuming")
			return func() wire.ChatRequest { return wire.ChatRequest{Clean: *clean} }
		})
	exempt := chatOp("exempt", "Exempt a session from idle reaping (--off clears it)",
		`Set the session's exempt flag: it is never stopped for being idle. --off
clears the flag.

Two fields tell the story in status --json: "exempt_flag" is this flag only;
"exempt" is true when the session is exempt for any reason — this flag, or
being the master session (sessions.master), or a chat id ending in
sessions.exempt_suffix (-bg). --off clears only the flag: the master session
and -bg chats stay exempt.`,
		"  dispatch sessions exempt nightly-report\n  dispatch sessions exempt nightly-report --off",
		func(c *cobra.Command) func() wire.ChatRequest {
			off := c.Flags().Bool("off", false, "clear the exemption flag")
			return func() wire.ChatRequest { return wire.ChatRequest{Off: *off} }
		})
	stop := &cobra.Command{
		Use:   "stop CHAT",
		Short: "Stop the chat's turn in flight; its messages are not retried",
		Long: `Stop the turn the chat's agent is working on, as its person's /stop in a
chat app does: the turn ends (the Claude Code CLI is interrupted and keeps
its conversation), its messages are answered "Stopped." and not retried.
The agent goes on with the next message. With no turn running, nothing
changes.`,
		Example:           "  dispatch sessions stop tg:123456789",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeChats(g, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := connect(g, time.Minute, 0)
			if err != nil {
				return err
			}
			defer cl.Close()
			stopped, err := cl.StopTurn(cmd.Context(), args[0])
			if err != nil {
				if client.IsNotFound(err) {
					return fmt.Errorf("unknown chat %q", args[0])
				}
				return err
			}
			what := "turn stopped"
			if !stopped {
				what = "no turn running"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", termsafe.Line(args[0]), what)
			return nil
		},
	}
	cmd.AddCommand(list, kill, restart, stop, exempt, pause, resume)
	return cmd
}
