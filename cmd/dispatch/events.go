package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func eventsCmd(g *globals) *cobra.Command {
	var (
		after, chat, types string
		follow, asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the event feed (replies, dead letters, session and API changes); --follow keeps printing",
		Long: `Print the event feed, oldest first: replies (one per turn, with the turn id and
the ids of the messages it answered), dead letters, failed, recovered and reset
sessions, and API outages. --after SEQ starts after that event; --follow waits
for new events (a long poll, woken the moment one is committed) until
interrupted. --json prints one event per line as JSON.`,
		Example: `  dispatch events
  dispatch events --follow --types reply,dead_letter
  dispatch events --after 1200 --chat alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := url.Values{}
			if after != "" {
				n, err := events.SeqOf(after)
				if err != nil {
					return fmt.Errorf("--after: %w", err)
				}
				v.Set("after", strconv.FormatInt(n, 10))
			}
			if chat != "" {
				if err := wire.ValidChatID(chat); err != nil {
					return err
				}
				v.Set("chat", chat)
			}
			if types != "" {
				if _, err := events.ParseTypes(types); err != nil {
					return err
				}
				v.Set("types", types)
			}
			v.Set("limit", strconv.Itoa(events.MaxLimit))
			c, err := connect(g, 0, 0) // each request has its own deadline
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if follow {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				v.Set("wait", "60s")
			}
			out := cmd.OutOrStdout()
			printed := 0
			for {
				rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
				page, err := c.Events(rctx, v)
				cancel()
				if err != nil {
					if follow && ctx.Err() != nil {
						return nil // interrupted
					}
					var ae *client.Error
					if errors.As(err, &ae) && ae.Status == http.StatusGone {
						return fmt.Errorf("%s (start again with --after and the oldest kept seq minus one)", ae.Msg)
					}
					return err
				}
				for _, ev := range page.Events {
					if err := printEvent(out, ev, asJSON); err != nil {
						return err
					}
				}
				if printed == 0 && len(page.Events) == 0 && chat != "" {
					// Nothing for this chat: a typo should not pass for a
					// quiet chat.
					if err := unknownChat(ctx, c, chat); err != nil {
						if !follow {
							return err
						}
						fmt.Fprintf(cmd.ErrOrStderr(), "dispatch: %v; waiting for its events\n", err)
					}
				}
				printed += len(page.Events)
				v.Set("after", strconv.FormatInt(page.Next, 10))
				if len(page.Events) == 0 && !follow {
					return nil
				}
			}
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "start after this event (its seq, or its id evt-SEQ)")
	cmd.Flags().StringVar(&chat, "chat", "", "only this chat's events")
	_ = cmd.RegisterFlagCompletionFunc("chat", completeChats(g, -1))
	cmd.Flags().StringVar(&types, "types", "", "only these types, comma-separated (reply,dead_letter,session_failed,session_recovered,session_reset,api_down,api_up)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as one line of JSON")
	return cmd
}

// unknownChat is nil when the daemon has a session for chat, else an error
// naming the chat and the known chats it may be a typo of.
func unknownChat(ctx context.Context, c *client.Client, chat string) error {
	st, err := c.Status(ctx)
	if err != nil {
		return nil // cannot tell: say nothing
	}
	var near []string
	for _, s := range st.Sessions {
		if s.ChatID == chat {
			return nil
		}
		if editDistance(s.ChatID, chat) <= 2 {
			near = append(near, shellArg(s.ChatID))
		}
	}
	msg := fmt.Sprintf("unknown chat %q: the daemon has no session and no events for it", termsafe.Line(chat))
	if len(near) > 0 {
		msg += "; did you mean " + strings.Join(near, " or ") + "?"
	}
	return errors.New(msg)
}

// editDistance is the Levenshtein distance of a and b, in runes.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	prev := make([]int, len(y)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(x); i++ {
		cur := make([]int, len(y)+1)
		cur[0] = i
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(y)]
}

// printEvent writes one event: a JSON line, or a human line whose text
// parts are made safe for a terminal.
func printEvent(w io.Writer, ev events.Event, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var detail string
	switch ev.Type {
	case events.Reply:
		detail = fmt.Sprintf("turn %s, messages %s: %s", ev.TurnID, strings.Join(ev.MessageIDs, ","), clipText(ev.Text, 200))
	case events.DeadLetter:
		detail = fmt.Sprintf("message %s: %s", ev.MessageID, ev.Error)
	case events.PermissionRequest:
		detail = fmt.Sprintf("request %s: %s: %s", ev.RequestID, ev.Tool, clipText(ev.Summary, 200))
		if ev.ExpiresAt != nil {
			detail += fmt.Sprintf(" (expires %s)", ev.ExpiresAt.UTC().Format(time.RFC3339))
		}
	case events.PermissionDecided:
		detail = fmt.Sprintf("request %s: %s %s by %s", ev.RequestID, ev.Tool, ev.Decision, ev.By)
		if ev.Reason != "" {
			detail += " (" + ev.Reason + ")"
		}
	case events.Progress:
		detail = fmt.Sprintf("%s: %s", ev.Tool, clipText(ev.Summary, 200))
	case events.ScheduleFired:
		detail = fmt.Sprintf("schedule %s, the firing of %s: message %s", ev.ScheduleID, utcTime(ev.ScheduledAt), ev.MessageID)
	case events.ScheduleMissed:
		detail = fmt.Sprintf("schedule %s: %d firing(s) not made, %s to %s: %s", ev.ScheduleID, ev.Count, utcTime(ev.First), utcTime(ev.Last), ev.Reason)
	default:
		detail = ev.Reason
	}
	_, err := fmt.Fprintf(w, "%d  %s  %s  %s  %s\n", ev.Seq, ev.At.UTC().Format(time.RFC3339),
		ev.Type, termsafe.Line(ev.ChatID), termsafe.Line(detail))
	return err
}

// utcTime is t in UTC, RFC 3339 ("?" when nil).
func utcTime(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}

// clipText cuts s to at most n characters (whole runes), with an ellipsis.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
