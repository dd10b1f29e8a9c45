package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/dispatchd/dispatch/internal/session"
	"io"
	"sort"
	"time"

	"github.com/mattn/go-runewidth"
	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's and every session's health",
		Long: `Show the daemon (pid, version, uptime, whether the AI API is up, the queue)
and one line per session: its state, health verdict, idle time, errors,
waiting messages, turns, restarts, saved session id and whether it is
exempt from idle reaping. Exits 1 when the daemon is not reachable.`,
		Example: `  dispatch status
  dispatch status --json | jq '.sessions[] | select(.healthy | not)'`,
		Args: cobra.NoArgs,
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

// fetchStatus asks the daemon for its status: the raw JSON (printed as
// the daemon sent it, so no field is lost) and its decoding.
func fetchStatus(ctx context.Context, g *globals) (json.RawMessage, wire.Status, error) {
	var st wire.Status
	c, err := connect(g, 10*time.Second, 0)
	if err != nil {
		return nil, st, err
	}
	defer c.Close()
	var raw json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/status", nil, &raw); err != nil {
		return nil, st, err
	}
	return raw, st, json.Unmarshal(raw, &st)
}

func printStatus(w io.Writer, st wire.Status) error {
	d := st.Daemon
	fmt.Fprintf(w, "dispatch %s  pid %d  up %s  api %s  queue: %d pending, %d in flight, %d dead\n",
		termsafe.Line(d.Version), d.PID, human(seconds(d.UptimeSeconds)), termsafe.Line(d.API),
		st.Queue.Pending, st.Queue.Inflight, st.Queue.Dead)
	printWebhookLine(w, st.Webhooks)
	printNodes(w, st)
	if len(st.Sessions) == 0 {
		fmt.Fprintln(w, "no sessions")
		return nil
	}
	if err := sessionTable(st.Sessions).print(w); err != nil {
		return err
	}
	return printReasons(w, st.Sessions)
}

// reasonWidth is the width of the HEALTH column.
const reasonWidth = 40

// printReasons follows the sessions table: in full, each health reason
// the table clipped, and for a failed or paused session with waiting
// messages the command that lets it go on.
func printReasons(w io.Writer, ss []wire.SessionStatus) error {
	for _, s := range ss {
		var hint string
		switch {
		case s.State == string(session.Failed):
			hint = fmt.Sprintf(" (`dispatch sessions restart %s` starts it again)", shellArg(s.ChatID))
		case s.State == string(session.Paused) && s.QueueDepth > 0:
			hint = fmt.Sprintf(" (%d waiting; `dispatch sessions resume %s` lets them go)", s.QueueDepth, shellArg(s.ChatID))
		}
		reason := termsafe.Line(s.HealthReason)
		if hint == "" && runewidth.StringWidth(reason) <= reasonWidth {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s: %s%s\n", termsafe.Line(s.ChatID), reason, hint); err != nil {
			return err
		}
	}
	return nil
}

// sessionTable is the sessions, most recently active first.
func sessionTable(ss []wire.SessionStatus) *table {
	sessions := append([]wire.SessionStatus(nil), ss...)
	sort.SliceStable(sessions, func(i, j int) bool { return sessions[i].IdleSeconds < sessions[j].IdleSeconds })
	owners := false
	for _, s := range sessions {
		owners = owners || s.Owner != ""
	}
	cols := []string{"CHAT", "STATE", "HEALTH", "BUSY", "IDLE", "ERRORS", "QUEUE", "TURNS", "RESTARTS", "MEMORY", "SESSION", "EXEMPT"}
	if owners {
		cols = append(cols, "OWNER")
	}
	t := newTable(cols...)
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
		row := []any{cell(s.ChatID, 40), s.State, cell(s.HealthReason, reasonWidth), yesNo(s.Busy), human(seconds(s.IdleSeconds)),
			s.ErrorCount, s.QueueDepth, s.Turns, s.Restarts, mem, sid, exemptCell(s)}
		if owners {
			owner := s.Owner
			if owner == "" {
				owner = "-"
			}
			row = append(row, cell(owner, 40))
		}
		t.add(row...)
	}
	return t
}

// exemptCell says why a session is exempt from idle reaping: "flag" when
// an operator set it (sessions exempt), "yes" for the master session or
// the exempt suffix.
func exemptCell(s wire.SessionStatus) string {
	switch {
	case s.ExemptFlag:
		return "flag"
	case s.Exempt:
		return "yes"
	}
	return "-"
}

// printNodes prints the cluster's nodes (PostgreSQL), one line each.
func printNodes(w io.Writer, st wire.Status) {
	for _, n := range st.Nodes {
		state := "live"
		switch {
		case n.Stopped:
			state = "stopped"
		case !n.Live:
			state = "DEAD"
		}
		self := ""
		if n.Self {
			self = " (this node)"
		}
		fmt.Fprintf(w, "node %s%s: %s, last heartbeat %s ago, %d chats\n",
			termsafe.Line(n.ID), self, state, human(seconds(n.HeartbeatAge)), n.Chats)
	}
}
