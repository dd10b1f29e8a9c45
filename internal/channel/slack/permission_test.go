package slack

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	slackapi "github.com/slack-go/slack"
	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/fakeslack"
)

func blocksJSON(t *testing.T, blocks []slackapi.Block) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(blocks); err != nil {
		t.Fatal(err)
	}
	// Nested marshallers of slack-go escape < and > themselves.
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(strings.TrimSpace(b.String()))
}

func TestPermissionMessage(t *testing.T) {
	text, blocks, err := PermissionMessage(PermissionRequest{ID: "req-1", Tool: "Bash", Summary: "touch `x` && echo <ok>\n"})
	if err != nil {
		t.Fatal(err)
	}
	if text != "Permission needed: Bash: touch `x` &amp;&amp; echo &lt;ok&gt;" {
		t.Errorf("text %q", text)
	}
	want := `[{"type":"section","text":{"type":"mrkdwn","text":"Permission needed: *Bash* wants to run ` + "`touch ˋxˋ &amp;&amp; echo &lt;ok&gt;`" + `"}},` +
		`{"type":"actions","block_id":"perm:req-1","elements":[` +
		`{"type":"button","text":{"type":"plain_text","text":"Allow once","emoji":false},"action_id":"perm:allow:req-1","value":"req-1","style":"primary"},` +
		`{"type":"button","text":{"type":"plain_text","text":"Always here","emoji":false},"action_id":"perm:allow_always:req-1","value":"req-1"},` +
		`{"type":"button","text":{"type":"plain_text","text":"Deny","emoji":false},"action_id":"perm:deny:req-1","value":"req-1","style":"danger"}]}]`
	if got := blocksJSON(t, blocks); got != want {
		t.Errorf("blocks\n got %s\nwant %s", got, want)
	}
	for _, id := range []string{"", "a b", strings.Repeat("x", MaxRequestIDLen+1)} {
		if _, _, err := PermissionMessage(PermissionRequest{ID: id, Tool: "Bash"}); err == nil {
			t.Errorf("request id %q accepted", id)
		}
	}
	// A long summary is cut, so the section stays within Slack's limit.
	_, blocks, _ = PermissionMessage(PermissionRequest{ID: "r", Tool: "Write", Summary: strings.Repeat("&", 5000)})
	if s := blocks[0].(*slackapi.SectionBlock).Text.Text; len([]rune(s)) > 3000 || !strings.HasSuffix(s, "…`") {
		t.Errorf("long summary: %d characters", len([]rune(s)))
	}
}

func TestAnsweredMessage(t *testing.T) {
	r := PermissionRequest{ID: "req-1", Tool: "Bash", Summary: "touch x"}
	for _, tc := range []struct {
		d        Decision
		by, want string
	}{
		{Allow, "U1", "Allowed once by <@U1>"},
		{AllowAlways, "U1", "Always allowed here by <@U1>"},
		{Deny, "U2", "Denied by <@U2>"},
		{Deny, "", "Denied (no answer in time)"},
		{Allow, "cli", "Allowed once by cli"},
	} {
		text, blocks := AnsweredMessage(r, tc.d, tc.by)
		got := blocksJSON(t, blocks)
		if strings.Contains(got, "button") || !strings.Contains(got, `"text":"`+tc.want+`"`) || !strings.Contains(got, "*Bash* wants to run `touch x`") {
			t.Errorf("%s by %q: %s", tc.d, tc.by, got)
		}
		if !strings.HasSuffix(text, ": Bash: touch x") {
			t.Errorf("text %q", text)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	press := func(actionID, value, user string) slackapi.InteractionCallback {
		var cb slackapi.InteractionCallback
		cb.Type = slackapi.InteractionTypeBlockActions
		cb.User.ID = user
		cb.Channel.ID = "D1"
		cb.Container.MessageTs = "1.000001"
		cb.ActionCallback.BlockActions = []*slackapi.BlockAction{{ActionID: actionID, Value: value}}
		return cb
	}
	for _, tc := range []struct {
		name string
		cb   slackapi.InteractionCallback
		want Answer
		err  string
	}{
		{"allow", press("perm:allow:r1", "r1", "U1"), Answer{RequestID: "r1", Decision: Allow, User: "U1", Channel: "D1", MessageTS: "1.000001"}, ""},
		{"always", press("perm:allow_always:r:2", "r:2", "U1"), Answer{RequestID: "r:2", Decision: AllowAlways, User: "U1", Channel: "D1", MessageTS: "1.000001"}, ""},
		{"deny", press("perm:deny:r1", "r1", "U9"), Answer{RequestID: "r1", Decision: Deny, User: "U9", Channel: "D1", MessageTS: "1.000001"}, ""},
		{"another app's button", press("vote:yes", "1", "U1"), Answer{}, ErrNotPermission.Error()},
		{"unknown decision", press("perm:maybe:r1", "r1", "U1"), Answer{}, "no valid decision"},
		{"value not the id", press("perm:allow:r1", "r2", "U1"), Answer{}, "not its request id"},
		{"no user", press("perm:allow:r1", "r1", ""), Answer{}, "without a user"},
		{"not block actions", slackapi.InteractionCallback{Type: slackapi.InteractionTypeViewSubmission}, Answer{}, ErrNotPermission.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnswer(tc.cb)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := ParseAnswer(press("x", "", "U1")); !errors.Is(err, ErrNotPermission) {
		t.Fatal("not errors.Is ErrNotPermission")
	}
}

// TestPermissionRoundTrip sends the permission message through slack-go
// to the fake Slack, presses a button there and parses the block_actions
// payload Slack would deliver.
func TestPermissionRoundTrip(t *testing.T) {
	fake := fakeslack.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	api := slackapi.New(fake.BotToken(), slackapi.OptionAPIURL(fake.APIURL()), slackapi.OptionHTTPClient(&http.Client{Transport: tr}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	posted, err := fake.Post(fakeslack.Incoming{User: "U0ANN", Channel: "C0TEAM", Text: "deploy", Mention: true})
	if err != nil {
		t.Fatal(err)
	}
	r := PermissionRequest{ID: "01J9ZK", Tool: "Bash", Summary: "make deploy"}
	text, blocks, err := PermissionMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	_, ts, err := api.PostMessageContext(ctx, "C0TEAM", slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...), slackapi.MsgOptionTS(posted.TS))
	if err != nil {
		t.Fatal(err)
	}
	envID, err := fake.Press("C0TEAM", ts, "U0ANN", ActionID(AllowAlways, r.ID))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := fake.Envelope(envID)
	var cb slackapi.InteractionCallback
	if err := json.Unmarshal(env.Payload, &cb); err != nil {
		t.Fatal(err)
	}
	a, err := ParseAnswer(cb)
	want := Answer{RequestID: r.ID, Decision: AllowAlways, User: "U0ANN", Channel: "C0TEAM", MessageTS: ts, ThreadTS: posted.TS}
	if err != nil || a != want {
		t.Fatalf("answer %+v %v, want %+v", a, err, want)
	}
	text, blocks = AnsweredMessage(r, a.Decision, a.User)
	if _, _, _, err := api.UpdateMessageContext(ctx, "C0TEAM", ts, slackapi.MsgOptionText(text, false), slackapi.MsgOptionBlocks(blocks...)); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Press("C0TEAM", ts, "U0ANN", ActionID(Deny, r.ID)); err == nil {
		t.Fatal("the answered message still has buttons")
	}
	// A reply split for Slack goes out whole: every part accepted, in order.
	var md strings.Builder
	for range 300 {
		md.WriteString("A line of the **reply** with `code` & <stuff>.\n")
	}
	for _, p := range Split(md.String(), MaxPartLen) {
		if _, _, err := api.PostMessageContext(ctx, "C0TEAM", slackapi.MsgOptionText(p, false), slackapi.MsgOptionTS(posted.TS)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range fake.BotMessages("C0TEAM") {
		if m.Truncated {
			t.Fatal("a part was truncated")
		}
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
