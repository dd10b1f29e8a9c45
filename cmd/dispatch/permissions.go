package main

import (
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/client"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func permissionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "permissions",
		Aliases: []string{"perm"},
		Short:   "List and answer the agents' requests to run tools, and the standing rules",
		Long: `With agent.permissions: ask, an agent asks before it runs a tool that needs
permission (a shell command that writes, a file write or edit). The request
waits for a person until agent.permission_timeout, then it is denied.

  list            the open requests (ID, chat, tool, what it does, time left)
  allow ID        let the call run; --always also lets this chat's agent use
                  the tool from now on without asking (a rule)
  deny ID         refuse the call
  rules           the standing rules (allow --always)
  rm CHAT TOOL    remove a rule: the tool is asked about again

allow and deny exit 1 when the request is unknown or already answered
(or expired).`,
		Example: `  dispatch permissions list
  dispatch permissions allow 4f1c…
  dispatch permissions allow 4f1c… --always
  dispatch permissions deny 4f1c…
  dispatch permissions rules
  dispatch permissions rm alice Bash`,
	}
	var (
		chat   string
		asJSON bool
	)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the open permission requests, oldest first",
		Example: "  dispatch permissions list\n  dispatch permissions list --chat alice --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			reqs, err := c.Permissions(cmd.Context(), chat)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if reqs == nil {
					reqs = []wire.PermissionOut{}
				}
				return printJSON(out, reqs)
			}
			if len(reqs) == 0 {
				fmt.Fprintln(out, "no open permission requests")
				return nil
			}
			now := time.Now()
			t := newTable("ID", "CHAT", "TOOL", "SUMMARY", "ASKED", "EXPIRES IN")
			for _, r := range reqs {
				t.add(r.ID, cell(r.ChatID, 24), cell(r.Tool, 16), cell(r.Summary, 60), age(r.CreatedAt, now), left(r.ExpiresAt, now))
			}
			return t.print(out)
		},
	}
	list.Flags().StringVar(&chat, "chat", "", "only this chat")
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")

	answer := func(use, short, example string, decision func(always bool) string) *cobra.Command {
		var always bool
		c := &cobra.Command{
			Use:     use + " ID",
			Short:   short,
			Example: example,
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := connect(g, 30*time.Second, 0)
				if err != nil {
					return err
				}
				defer c.Close()
				r, err := c.Decide(cmd.Context(), args[0], wire.DecisionIn{Decision: decision(always), By: cliUser()})
				switch client.StatusOf(err) {
				case 0:
				case http.StatusNotFound:
					return fmt.Errorf("no permission request with id %q", termsafe.Line(args[0]))
				case http.StatusConflict:
					var e *client.Error
					if errors.As(err, &e) {
						return errors.New(termsafe.Line(e.Msg))
					}
					return err
				default:
					return err
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s in chat %s: %s)\n", r.Decision, termsafe.Line(r.ID),
					termsafe.Line(r.Tool), termsafe.Line(r.ChatID), termsafe.Line(r.Summary))
				return nil
			},
		}
		if use == "allow" {
			c.Flags().BoolVar(&always, "always", false, "also let this chat's agent use the tool from now on without asking")
		}
		return c
	}
	allow := answer("allow", "Let the agent run the call it asked about",
		"  dispatch permissions allow 4f1c…\n  dispatch permissions allow 4f1c… --always", func(always bool) string {
			if always {
				return "allow_always"
			}
			return "allow"
		})
	deny := answer("deny", "Refuse the call the agent asked about", "  dispatch permissions deny 4f1c…", func(bool) string { return "deny" })

	rules := &cobra.Command{
		Use:     "rules",
		Short:   "List the standing rules (allow --always): chat and tool answered without asking",
		Example: "  dispatch permissions rules --chat alice",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			rs, err := c.PermissionRules(cmd.Context(), chat)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if rs == nil {
					rs = []wire.RuleOut{}
				}
				return printJSON(out, rs)
			}
			if len(rs) == 0 {
				fmt.Fprintln(out, "no permission rules")
				return nil
			}
			now := time.Now()
			t := newTable("CHAT", "TOOL", "SINCE", "BY")
			for _, r := range rs {
				t.add(cell(r.ChatID, 24), cell(r.Tool, 24), age(r.CreatedAt, now), cell(r.CreatedBy, 24))
			}
			return t.print(out)
		},
	}
	rules.Flags().StringVar(&chat, "chat", "", "only this chat")
	rules.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")

	rm := &cobra.Command{
		Use:     "rm CHAT TOOL",
		Short:   "Remove a standing rule: the tool is asked about again",
		Example: "  dispatch permissions rm alice Bash",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(g, 30*time.Second, 0)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.RemovePermissionRule(cmd.Context(), args[0], args[1]); err != nil {
				if client.IsNotFound(err) {
					return fmt.Errorf("chat %q has no rule for %q", termsafe.Line(args[0]), termsafe.Line(args[1]))
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed: %s %s\n", termsafe.Line(args[0]), termsafe.Line(args[1]))
			return nil
		},
	}
	cmd.AddCommand(list, allow, deny, rules, rm)
	return cmd
}

// cliUser is who a decision from this command names: cli:<login>.
func cliUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" && len(u.Username) <= 40 {
		return "cli:" + u.Username
	}
	return "cli"
}

// left is the time until an RFC 3339 instant, for a table.
func left(at string, now time.Time) string {
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return "?"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	return d.Round(time.Second).String()
}
