package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/schedule"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func scheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedule",
		Aliases: []string{"schedules", "sched"},
		Short:   "Send a text into a chat at given times: cron with a time zone, an interval, or once",
		Long: `A schedule sends a given text into a chat at its times. Each firing is an
ordinary accepted message (client id sched:<id>:<scheduled time>), so it is
never doubled and never lost, and shows in the event feed as schedule_fired.

  add CHAT TEXT    --cron EXPR [--tz ZONE]   five-field cron on the zone's wall clock
                   --every D                 every D of real time (Go syntax: 30m, 1h30m)
                   --at TIME [--tz ZONE]     once (2026-12-24T17:00 in the zone)
  list             the schedules: when, next firing, last fired, paused
  rm ID            remove a schedule
  pause ID         stop firing until resumed
  resume ID        fire again (the firings that fell during the pause are
                   reported missed, not fired)

Firings missed while the daemon was down follow --catch-up: one (default:
one firing for the whole gap, if within schedules.catch_up_window), none,
or all; whatever is not fired is reported in a schedule_missed event.
docs/schedules.md has the syntax, daylight saving and catch-up in full.

The commands exit 1 when the schedule is unknown or refused, with the
reason.`,
		Example: `  # every weekday at 8:00, Berlin time
  dispatch schedule add alice --cron '0 8 * * 1-5' --tz Europe/Berlin 'summarise my inbox'
  dispatch schedule add alice --at 2026-12-24T17:00 --tz Europe/Berlin 'remind me: presents'
  dispatch schedule add bridge-42 --every 30m --catch-up none 'check the build'
  dispatch schedule list
  dispatch schedule pause s_b6nc3rfy9e`,
	}
	cmd.AddCommand(scheduleAddCmd(g), scheduleListCmd(g),
		scheduleIDCmd(g, "rm", "Remove a schedule", "  dispatch schedule rm s_b6nc3rfy9e"),
		scheduleIDCmd(g, "pause", "Stop a schedule firing until it is resumed", "  dispatch schedule pause s_b6nc3rfy9e"),
		scheduleIDCmd(g, "resume", "Let a paused schedule fire again", "  dispatch schedule resume s_b6nc3rfy9e"))
	return cmd
}

func scheduleAddCmd(g *globals) *cobra.Command {
	var in wire.ScheduleIn
	cmd := &cobra.Command{
		Use:   "add CHAT (--cron EXPR [--tz ZONE] | --every D | --at TIME [--tz ZONE]) [--catch-up one|none|all] TEXT",
		Short: "Add a schedule; prints its id",
		Long: `Add a schedule that sends TEXT into CHAT. Give exactly one of
  --cron EXPR   a five-field cron expression (minute hour day-of-month month
                day-of-week), e.g. '0 8 * * 1-5', or @daily, @hourly, …; read
                on the wall clock of --tz
  --every D     an interval of real time, at least 1m: 30m, 1h30m, 24h; the
                first firing is one interval from now
  --at TIME     once: 2026-12-24T17:00 in --tz, or RFC 3339 with an offset
--tz is an IANA zone (Europe/Berlin, America/New_York); without it, UTC.
TEXT "-" reads the text from standard input (up to 1 MiB).

It prints the new schedule's id alone on a line, and its next firing on
standard error. A refused expression, zone or time exits 1 with the reason.`,
		Example: `  # every weekday at 8:00, Berlin time
  dispatch schedule add alice --cron '0 8 * * 1-5' --tz Europe/Berlin 'summarise my inbox'
  # once, at 17:00 New York time
  dispatch schedule add alice --at 2026-12-24T17:00 --tz America/New_York 'remind me at 17:00'
  # every 30 minutes; firings missed while the daemon is down are dropped (and reported)
  dispatch schedule add bridge-42 --every 30m --catch-up none 'check the build'
  dispatch schedule add family --cron @daily - < prompt.txt`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 2 {
				return fmt.Errorf("schedule add takes CHAT and TEXT, got %d arguments: quote a text of several words, e.g. dispatch schedule add %s --every 1h %q",
					len(args), termsafe.Line(args[0]), strings.Join(args[1:], " "))
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		ValidArgsFunction: completeChats(g, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := scheduleFlagsProblem(in); err != nil {
				return err
			}
			text, err := textArg(cmd, args[1])
			if err != nil {
				return err
			}
			in.ChatID, in.Text = args[0], text
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			s, err := c.AddSchedule(cmd.Context(), in)
			if err != nil {
				return scheduleErr(err, "")
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.ID)
			next := "no next firing"
			if s.Next != "" {
				next = "next firing " + whenLocal(s.Next, s.TZ)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "dispatch: schedule %s for chat %s: %s; %s\n",
				termsafe.Line(s.ID), termsafe.Line(s.ChatID), termsafe.Line(scheduleWhen(s)), next)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Cron, "cron", "", "a five-field cron expression, e.g. '0 8 * * 1-5' (quote it)")
	f.StringVar(&in.Every, "every", "", "an interval of real time, e.g. 30m, 1h30m, 24h (at least 1m)")
	f.StringVar(&in.At, "at", "", "once, at this time: 2026-12-24T17:00 (in --tz) or RFC 3339 with an offset")
	f.StringVar(&in.TZ, "tz", "", "the IANA time zone of --cron or --at, e.g. Europe/Berlin (default UTC)")
	f.StringVar(&in.CatchUp, "catch-up", "", "what to do with firings missed while the daemon was down: one (default), none, all")
	_ = cmd.RegisterFlagCompletionFunc("catch-up", cobra.FixedCompletions([]string{"one", "none", "all"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("tz", completeZones)
	for _, name := range []string{"cron", "every", "at"} {
		_ = cmd.RegisterFlagCompletionFunc(name, cobra.NoFileCompletions)
	}
	return cmd
}

// scheduleFlagsProblem checks what the CLI can check on its own before it
// asks the daemon; the expression, zone and time are the daemon's to
// judge (it may be another version than this binary).
func scheduleFlagsProblem(in wire.ScheduleIn) error {
	n := 0
	for _, v := range []string{in.Cron, in.Every, in.At} {
		if v != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return errors.New("give exactly one of --cron, --every and --at")
	case in.Every != "" && in.TZ != "":
		return errors.New("--tz does not apply to --every (an interval is real time, whatever the zone); for a time of day use --cron, e.g. --cron '0 9 * * *' --tz " + shellArg(in.TZ))
	}
	if _, err := schedule.ParsePolicy(in.CatchUp); err != nil {
		return fmt.Errorf("--catch-up: %w", err)
	}
	return nil
}

// textArg is a TEXT argument: "-" reads standard input, up to a text's
// limit.
func textArg(cmd *cobra.Command, text string) (string, error) {
	if text != "-" {
		return text, nil
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), wire.MaxText+1))
	if err != nil {
		return "", fmt.Errorf("read standard input: %w", err)
	}
	if len(b) > wire.MaxText {
		return "", fmt.Errorf("standard input holds more than %d bytes, the limit of a text", wire.MaxText)
	}
	return string(b), nil
}

// scheduleErr says what went wrong with schedule id: refused (the
// daemon's reason), unknown, or the daemon's own error.
func scheduleErr(err error, id string) error {
	var e *client.Error
	switch client.StatusOf(err) {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		if errors.As(err, &e) {
			return errors.New("refused: " + termsafe.Line(e.Msg))
		}
	case http.StatusNotFound:
		return fmt.Errorf("no schedule with id %q (dispatch schedule list shows them)", termsafe.Line(id))
	case http.StatusServiceUnavailable:
		if errors.As(err, &e) {
			return errors.New(termsafe.Line(e.Msg))
		}
	}
	return err
}

func scheduleListCmd(g *globals) *cobra.Command {
	var (
		chat   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the schedules: when, next firing, last fired, paused or finished",
		Long: `List the schedules, oldest first. NEXT is the next firing in the schedule's
own zone; LAST FIRED how long ago the last firing was accepted. A paused
schedule has no next firing; a one-off schedule that has fired is
finished and stays listed until removed. --json prints the schedules as the
API gives them (times in UTC, RFC 3339).`,
		Example: "  dispatch schedule list\n  dispatch schedule list --chat alice --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if chat != "" {
				if err := wire.ValidChatID(chat); err != nil {
					return err
				}
			}
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			ss, err := c.Schedules(cmd.Context(), chat)
			if err != nil {
				return scheduleErr(err, "")
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if ss == nil {
					ss = []wire.Schedule{}
				}
				return printJSON(out, ss)
			}
			if len(ss) == 0 {
				fmt.Fprintln(out, "no schedules")
				return nil
			}
			printSchedules(out, ss, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&chat, "chat", "", "only this chat's schedules")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	_ = cmd.RegisterFlagCompletionFunc("chat", completeChats(g, -1))
	return cmd
}

// printSchedules writes the schedule table.
func printSchedules(w io.Writer, ss []wire.Schedule, now time.Time) {
	t := newTable("ID", "CHAT", "WHEN", "NEXT", "LAST FIRED", "STATE", "TEXT")
	for _, s := range ss {
		next, last := "-", "-"
		if s.Next != "" {
			next = whenLocal(s.Next, s.TZ)
		}
		if s.LastFired != "" {
			last = age(s.LastFired, now)
		}
		t.add(s.ID, cell(s.ChatID, 24), cell(scheduleWhen(s), 40), next, last, scheduleState(s), cell(s.Text, 40))
	}
	_ = t.print(w)
}

// scheduleWhen is a schedule's times as a person writes them: "cron 0 8 *
// * 1-5 Europe/Berlin", "every 30m", "at 2026-12-24T17:00 Europe/Berlin".
func scheduleWhen(s wire.Schedule) string {
	w := s.Kind + " " + s.Expr
	if s.TZ != "" && s.Kind != string(schedule.Every) {
		w += " " + s.TZ
	}
	return w
}

// scheduleState is "paused", "finished" or "active".
func scheduleState(s wire.Schedule) string {
	switch {
	case s.Finished:
		return "finished"
	case s.Paused:
		return "paused"
	}
	return "active"
}

// whenLocal shows an RFC 3339 instant on the wall clock of zone (UTC when
// "" or unknown here): "2026-12-08 08:00 CET".
func whenLocal(rfc3339, zone string) string {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return rfc3339
	}
	loc, err := schedule.LoadZone(zone)
	if err != nil {
		loc = time.UTC
	}
	t = t.In(loc)
	if t.Second() != 0 {
		return t.Format("2006-01-02 15:04:05 MST")
	}
	return t.Format("2006-01-02 15:04 MST")
}

// scheduleIDCmd is rm, pause or resume: one schedule by id.
func scheduleIDCmd(g *globals, op, short, example string) *cobra.Command {
	return &cobra.Command{
		Use:               op + " ID",
		Short:             short,
		Example:           example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSchedules(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			id := args[0]
			var s wire.Schedule
			switch op {
			case "rm":
				err = c.RemoveSchedule(cmd.Context(), id)
			default:
				s, err = c.PauseSchedule(cmd.Context(), id, op == "pause")
			}
			if err != nil {
				return scheduleErr(err, id)
			}
			out := cmd.OutOrStdout()
			switch op {
			case "rm":
				fmt.Fprintf(out, "removed: %s\n", termsafe.Line(id))
			case "pause":
				fmt.Fprintf(out, "paused: %s (%s)\n", termsafe.Line(id), termsafe.Line(scheduleWhen(s)))
			default:
				next := "no next firing"
				if s.Next != "" {
					next = "next firing " + whenLocal(s.Next, s.TZ)
				}
				fmt.Fprintf(out, "resumed: %s (%s); %s\n", termsafe.Line(id), termsafe.Line(scheduleWhen(s)), next)
			}
			return nil
		},
	}
}

// completeSchedules completes the ids of the daemon's schedules.
func completeSchedules(g *globals) cobra.CompletionFunc {
	return completeFrom(g, 0, func(ctx context.Context, c *client.Client) ([]string, error) {
		ss, err := c.Schedules(ctx, "")
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range ss {
			out = append(out, cobra.CompletionWithDesc(s.ID, s.ChatID+" "+scheduleWhen(s)))
		}
		return out, nil
	})
}

// completeZones completes --tz with a few common zones (any IANA name is
// accepted).
func completeZones(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Chicago",
		"America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney"}, cobra.ShellCompDirectiveNoFileComp
}
