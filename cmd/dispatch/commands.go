package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/daemon"
	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/session"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/termsafe"
)

func daemonCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "daemon",
		Short: "Run the daemon in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			go func() {
				s := <-sigs
				fmt.Fprintf(os.Stderr, "dispatch: %s: shutting down (send it again to exit at once)\n", s)
				cancel()
				s = <-sigs
				fmt.Fprintf(os.Stderr, "dispatch: %s again: exiting now\n", s)
				os.Exit(1)
			}()
			return daemon.Run(ctx, cfg, daemon.Options{Version: version, Stderr: os.Stderr})
		},
	}
}

// connect loads the config and returns a client for its control socket.
func connect(g *globals, timeout time.Duration) (*client, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	return newClient(cfg.SocketPath(), timeout), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's and every session's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, st, err := fetchStatus(cmd.Context(), g)
			if err != nil {
				return &exitError{1, err}
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status object as JSON")
	return cmd
}

// fetchStatus asks the daemon for its status: the raw JSON and its decoding.
func fetchStatus(ctx context.Context, g *globals) (json.RawMessage, supervisor.Status, error) {
	var st supervisor.Status
	c, err := connect(g, 10*time.Second)
	if err != nil {
		return nil, st, err
	}
	var raw json.RawMessage
	if err := c.do(ctx, "GET", "/v1/status", nil, &raw); err != nil {
		return nil, st, err
	}
	return raw, st, json.Unmarshal(raw, &st)
}

func printStatus(w io.Writer, st supervisor.Status) error {
	d := st.Daemon
	fmt.Fprintf(w, "dispatch %s  pid %d  up %s  api %s  queue: %d pending, %d in flight, %d dead\n",
		d.Version, d.PID, human(time.Duration(d.UptimeSeconds*float64(time.Second))), d.API,
		st.Queue.Pending, st.Queue.Inflight, st.Queue.Dead)
	printWebhookLine(w, st.Webhooks)
	if len(st.Sessions) == 0 {
		fmt.Fprintln(w, "no sessions")
		return nil
	}
	sessions := append([]supervisor.SessionStatus(nil), st.Sessions...)
	sort.SliceStable(sessions, func(i, j int) bool { return sessions[i].IdleSeconds < sessions[j].IdleSeconds })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHAT\tSTATE\tHEALTH\tBUSY\tIDLE\tERRORS\tQUEUE\tTURNS\tRESTARTS\tMEMORY\tSESSION\tEXEMPT")
	for _, s := range sessions {
		sid := s.SessionID
		if len(sid) > 8 {
			sid = sid[:8]
		}
		mem := "-"
		if s.RSSBytes > 0 {
			mem = session.Bytes(s.RSSBytes)
		} else if s.StopReason != "" {
			mem = "(" + s.StopReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n",
			termsafe.Line(s.ChatID), s.State, termsafe.Line(s.HealthReason), yesNo(s.Busy), human(time.Duration(s.IdleSeconds*float64(time.Second))),
			s.ErrorCount, s.QueueDepth, s.Turns, s.Restarts, mem, sid, yesNo(s.Exempt))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// human renders a duration in the largest sensible units: 42s, 3m12s, 2h5m, 3d4h.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Exit statuses of `send --wait` beyond 0 (answered) and 1 (not accepted).
const (
	exitTimedOut = 3 // no reply in time; the message stays queued
	exitGivenUp  = 4 // the message is dead, or its session failed
)

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
durably stored. TEXT "-" reads the text from standard input.

--client-id gives the message your own key, scoped to the chat: sending the
same chat and client id again stores nothing and prints the original id; the
same pair with another text is refused.

With --wait it prints the reply instead and exits
  0 answered, 1 not accepted, 3 timed out (the message stays queued),
  4 given up: the message is dead, or its session failed (reason on stderr).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("timeout") && !wait {
				return errors.New("--timeout needs --wait")
			}
			text := args[1]
			if text == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), api.MaxText+1))
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
				text = string(b)
			}
			c, err := connect(g, 30*time.Second)
			if err != nil {
				return err
			}
			var acc api.Accepted
			in := api.MessageIn{ChatID: args[0], Text: text, ClientID: clientID}
			if err := c.do(cmd.Context(), "POST", "/v1/messages", in, &acc); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !wait {
				fmt.Fprintln(out, acc.ID)
				return nil
			}
			return waitReply(cmd.Context(), c, acc.ID, timeout, out)
		},
	}
	cmd.Flags().StringVar(&clientID, "client-id", "", "your own key for the message, unique within the chat: a resend with the same key is stored once")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the reply and print it instead of the id")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait: how long to wait for the reply")
	return cmd
}

// waitReply polls the message until it is done (prints the reply), until
// its outcome is known to be no reply (dead, or its session failed: exit
// 4), or until the timeout passes (exit 3; the message stays queued).
func waitReply(ctx context.Context, c *client, id string, timeout time.Duration, out io.Writer) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		var m api.MessageOut
		if err := c.do(ctx, "GET", "/v1/messages/"+id, nil, &m); err != nil {
			return err
		}
		switch {
		case m.State == "done":
			fmt.Fprintln(out, termsafe.Text(m.Reply))
			return nil
		case m.State == "dead":
			return &exitError{exitGivenUp, fmt.Errorf("message %s is dead after %d attempts: %s", id, m.Attempts, termsafe.Line(m.Error))}
		case m.Held != "":
			return &exitError{exitGivenUp, fmt.Errorf("message %s will not be answered until an operator acts (%s); it stays queued", id, termsafe.Line(m.Held))}
		}
		if time.Now().After(deadline) {
			return &exitError{exitTimedOut, fmt.Errorf("no reply to message %s within %s (state %s); it stays queued", id, timeout, m.State)}
		}
		time.Sleep(delay)
		delay = min(2*delay, 250*time.Millisecond)
	}
}

func sessionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sessions", Short: "List and operate sessions"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, st, err := fetchStatus(cmd.Context(), g)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st.Sessions)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	chatOp := func(use, short, path string, flags func(*cobra.Command) func() api.ChatRequest) *cobra.Command {
		var extra func() api.ChatRequest
		c := &cobra.Command{
			Use:   use + " CHAT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := connect(g, time.Minute)
				if err != nil {
					return err
				}
				req := api.ChatRequest{}
				if extra != nil {
					req = extra()
				}
				req.ChatID = args[0]
				if err := cl.do(cmd.Context(), "POST", path, req, nil); err != nil {
					if isNotFound(err) {
						return fmt.Errorf("unknown chat %q", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", use, args[0])
				return nil
			},
		}
		if flags != nil {
			extra = flags(c)
		}
		return c
	}
	kill := chatOp("kill", "Stop a session's agent (keeps its session_id); waiting messages go to a new agent at once", "/v1/sessions/kill", nil)
	pause := chatOp("pause", "Hold a chat: accept and keep its messages, hand none to the agent", "/v1/sessions/pause", nil)
	resume := chatOp("resume", "Let a paused chat's messages go, in order", "/v1/sessions/resume", nil)
	restart := chatOp("restart", "Restart a session (resumes unless --clean); clears failed", "/v1/sessions/restart",
		func(c *cobra.Command) func() api.ChatRequest {
			clean := c.Flags().Bool("clean", false, "start a new conversation instead of resuming")
			return func() api.ChatRequest { return api.ChatRequest{Clean: *clean} }
		})
	exempt := chatOp("exempt", "Exempt a session from idle reaping (--off clears it)", "/v1/sessions/exempt",
		func(c *cobra.Command) func() api.ChatRequest {
			off := c.Flags().Bool("off", false, "clear the exemption")
			return func() api.ChatRequest { return api.ChatRequest{Off: *off} }
		})
	cmd.AddCommand(list, kill, restart, exempt, pause, resume)
	return cmd
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func logsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [CHAT]",
		Short: "Print (or follow with -f) the manager log, or one session's log",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			path := logging.ManagerPath(cfg.StateDir)
			if len(args) == 1 {
				if err := api.ValidChatID(args[0]); err != nil {
					return err
				}
				path = logging.SessionPath(cfg.StateDir, args[0])
			}
			return printLog(cmd.Context(), path, follow, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	return cmd
}

// printLog copies a log file to out; with follow it keeps polling for new
// lines (and reopens the file when it is rotated) until interrupted.
func printLog(ctx context.Context, path string, follow bool, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no log at %s yet", path)
		}
		return err
	}
	defer func() { f.Close() }()
	// Lines are escaped: a log may quote what an agent or a sender wrote.
	rd := bufio.NewReader(f)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			fmt.Fprint(out, termsafe.Text(line))
		}
		if err != nil {
			break
		}
	}
	if !follow {
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			fmt.Fprint(out, termsafe.Text(line))
		}
		if err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		// rotated: the path now names a new, shorter file
		if st, serr := os.Stat(path); serr == nil {
			if pos, _ := f.Seek(0, io.SeekCurrent); st.Size() < pos {
				if nf, oerr := os.Open(path); oerr == nil {
					f.Close()
					f = nf
					rd = bufio.NewReader(f)
				}
			}
		}
	}
}
