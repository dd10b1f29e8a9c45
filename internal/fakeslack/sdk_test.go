package fakeslack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/fakeslack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness runs the fake on loopback and a slack-go Socket Mode client
// connected to it; the test acknowledges envelopes itself.
type harness struct {
	t      *testing.T
	fake   *fakeslack.Server
	api    *slack.Client
	sm     *socketmode.Client
	events chan socketmode.Event
	ctx    context.Context
}

func start(t *testing.T, opts ...fakeslack.Option) *harness {
	t.Helper()
	fake := fakeslack.New(opts...)
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	api := slack.New(fake.BotToken(),
		slack.OptionAPIURL(fake.APIURL()),
		slack.OptionAppLevelToken(fake.AppToken()),
		slack.OptionHTTPClient(&http.Client{Transport: tr, Timeout: 10 * time.Second}),
	)
	sm := socketmode.New(api)
	h := &harness{t: t, fake: fake, api: api, sm: sm, events: make(chan socketmode.Event, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan struct{}, 2)
	go func() { sm.RunContext(ctx); done <- struct{}{} }()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			select {
			case e := <-sm.Events:
				switch e.Type {
				case socketmode.EventTypeEventsAPI, socketmode.EventTypeInteractive, socketmode.EventTypeConnected, socketmode.EventTypeConnectionError:
					select {
					case h.events <- e:
					case <-ctx.Done():
						return
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		fake.Close()
		tr.CloseIdleConnections()
	})
	h.next(socketmode.EventTypeConnected)
	h.waitFor("the connection", func() bool { return fake.Connections() == 1 })
	return h
}

// next returns the next event of type typ, skipping others.
func (h *harness) next(typ socketmode.EventType) socketmode.Event {
	h.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-h.events:
			if e.Type == typ {
				return e
			}
		case <-timeout:
			h.t.Fatalf("no %s event reached the client", typ)
		}
	}
}

// nextEvent returns the next events_api envelope that is not the echo of
// the bot's own message.
func (h *harness) nextEvent() (socketmode.Event, slackevents.EventsAPIEvent) {
	h.t.Helper()
	for {
		e := h.next(socketmode.EventTypeEventsAPI)
		ev := e.Data.(slackevents.EventsAPIEvent)
		if m, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent); ok && m.BotID != "" {
			h.ack(e)
			continue
		}
		return e, ev
	}
}

func (h *harness) ack(e socketmode.Event) {
	h.t.Helper()
	if err := h.sm.Ack(*e.Request); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.fake.WaitFor(ctx, cond); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (h *harness) acked(envelopeID string) bool {
	e, ok := h.fake.Envelope(envelopeID)
	return ok && e.Acked
}

const ann = "U0ANN"

func TestSDKDirectMessageButtonsAndReactions(t *testing.T) {
	h := start(t)
	c := h.ctx

	at, err := h.api.AuthTestContext(c)
	if err != nil || at.UserID != h.fake.BotUserID() || at.TeamID != h.fake.TeamID() || at.BotID == "" {
		t.Fatalf("auth.test %+v %v", at, err)
	}

	// Ann writes to the bot directly.
	posted, err := h.fake.Post(fakeslack.Incoming{User: ann, Name: "ann", Text: "hello <there> & you"})
	if err != nil {
		t.Fatal(err)
	}
	e, ev := h.nextEvent()
	if ev.Type != slackevents.CallbackEvent || ev.TeamID != h.fake.TeamID() {
		t.Fatalf("outer event %+v", ev)
	}
	cb := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if cb.EventID != posted.EventIDs[0] || e.Request.EnvelopeID != posted.Envelopes[0] || e.Request.RetryAttempt != 0 {
		t.Fatalf("ids: event %s envelope %s, posted %+v", cb.EventID, e.Request.EnvelopeID, posted)
	}
	msg, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok || msg.Channel != posted.Channel || msg.ChannelType != "im" || msg.User != ann || msg.TimeStamp != posted.TS || msg.Text != "hello <there> & you" {
		t.Fatalf("message event %+v", ev.InnerEvent.Data)
	}
	h.ack(e)
	h.waitFor("the ack", func() bool { return h.acked(posted.Envelopes[0]) })

	// A reaction while the turn runs; a reply with permission buttons in
	// the thread of her message.
	ref := slack.NewRefToMessage(msg.Channel, msg.TimeStamp)
	if err := h.api.AddReactionContext(c, "hourglass_flowing_sand", ref); err != nil {
		t.Fatal(err)
	}
	if err := h.api.AddReactionContext(c, "hourglass_flowing_sand", ref); err == nil || err.Error() != "already_reacted" {
		t.Fatalf("second reaction: %v", err)
	}
	blocks := slack.MsgOptionBlocks(
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*Run* `touch x`?", false, false), nil, nil),
		slack.NewActionBlock("perm:r1",
			slack.NewButtonBlockElement("perm:allow:r1", "r1", slack.NewTextBlockObject(slack.PlainTextType, "Allow once", false, false)),
			slack.NewButtonBlockElement("perm:deny:r1", "r1", slack.NewTextBlockObject(slack.PlainTextType, "Deny", false, false)).WithStyle(slack.StyleDanger),
		),
	)
	ch, ts, err := h.api.PostMessageContext(c, msg.Channel, slack.MsgOptionText("Run touch x?", false), blocks, slack.MsgOptionTS(msg.TimeStamp))
	if err != nil || ch != msg.Channel || ts == "" {
		t.Fatalf("postMessage %s %s %v", ch, ts, err)
	}
	thread := h.fake.Thread(msg.Channel, msg.TimeStamp)
	if len(thread) != 2 || thread[1].TS != ts || thread[1].ThreadTS != msg.TimeStamp || thread[1].BotID == "" || len(thread[1].Blocks) == 0 {
		t.Fatalf("thread %+v", thread)
	}
	if m, _ := h.fake.Message(msg.Channel, msg.TimeStamp); len(m.Reactions) != 1 || m.Reactions[0].Name != "hourglass_flowing_sand" {
		t.Fatalf("reactions %+v", m.Reactions)
	}

	// Ann presses Deny.
	envID, err := h.fake.Press(msg.Channel, ts, ann, "perm:deny:r1")
	if err != nil {
		t.Fatal(err)
	}
	e = h.next(socketmode.EventTypeInteractive)
	cbk := e.Data.(slack.InteractionCallback)
	if cbk.Type != slack.InteractionTypeBlockActions || cbk.User.ID != ann || cbk.Channel.ID != msg.Channel || cbk.Container.MessageTs != ts || cbk.Message.Timestamp != ts {
		t.Fatalf("interaction %+v", cbk)
	}
	if a := cbk.ActionCallback.BlockActions; len(a) != 1 || a[0].ActionID != "perm:deny:r1" || a[0].Value != "r1" || a[0].BlockID != "perm:r1" {
		t.Fatalf("actions %+v", a)
	}
	if e.Request.EnvelopeID != envID {
		t.Fatalf("envelope %s, want %s", e.Request.EnvelopeID, envID)
	}
	h.ack(e)
	h.waitFor("the press ack", func() bool { return h.acked(envID) })

	// The answered state: text changed, buttons gone.
	answered := slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "Denied by <@U0ANN>", false, false), nil, nil))
	if _, _, _, err := h.api.UpdateMessageContext(c, msg.Channel, ts, slack.MsgOptionText("Denied", false), answered); err != nil {
		t.Fatal(err)
	}
	m, _ := h.fake.Message(msg.Channel, ts)
	if m.Text != "Denied" || strings.Contains(string(m.Blocks), "button") || len(m.Edits) != 1 {
		t.Fatalf("after update %+v", m)
	}
	if _, err := h.fake.Press(msg.Channel, ts, ann, "perm:deny:r1"); err == nil {
		t.Fatal("pressed a removed button")
	}
	if _, _, _, err := h.api.UpdateMessageContext(c, msg.Channel, msg.TimeStamp, slack.MsgOptionText("x", false)); err == nil || err.Error() != "cant_update_message" {
		t.Fatalf("update of the person's message: %v", err)
	}

	if err := h.api.RemoveReactionContext(c, "hourglass_flowing_sand", ref); err != nil {
		t.Fatal(err)
	}
	if err := h.api.RemoveReactionContext(c, "hourglass_flowing_sand", ref); err == nil || err.Error() != "no_reaction" {
		t.Fatalf("second removal: %v", err)
	}

	// A stranger gets an ephemeral refusal.
	if _, err := h.api.PostEphemeralContext(c, msg.Channel, ann, slack.MsgOptionText("You are U0ANN; not allowed.", false)); err != nil {
		t.Fatal(err)
	}
	if eph := h.fake.Ephemerals(msg.Channel); len(eph) != 1 || eph[0].User != ann {
		t.Fatalf("ephemerals %+v", eph)
	}

	info, err := h.api.GetConversationInfoContext(c, &slack.GetConversationInfoInput{ChannelID: msg.Channel})
	if err != nil || !info.IsIM || info.User != ann {
		t.Fatalf("conversations.info %+v %v", info, err)
	}
	u, err := h.api.GetUserInfoContext(c, ann)
	if err != nil || u.Name != "ann" {
		t.Fatalf("users.info %+v %v", u, err)
	}

	var methods []string
	for _, op := range h.fake.Ops(msg.Channel) {
		methods = append(methods, op.Method)
	}
	want := "reactions.add chat.postMessage chat.update reactions.remove chat.postEphemeral"
	if strings.Join(methods, " ") != want {
		t.Fatalf("ops %q, want %q", methods, want)
	}
}

func TestSDKChannelMentionAndThread(t *testing.T) {
	h := start(t)
	c := h.ctx
	posted, err := h.fake.Post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "status?", Mention: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(posted.EventIDs) != 2 {
		t.Fatalf("a mention in a channel raises a message and an app_mention event: %+v", posted)
	}
	seen := map[string]bool{}
	for range 2 {
		e, ev := h.nextEvent()
		switch in := ev.InnerEvent.Data.(type) {
		case *slackevents.MessageEvent:
			if in.ChannelType != "channel" || in.Text != "<@"+h.fake.BotUserID()+"> status?" {
				t.Fatalf("message %+v", in)
			}
			seen["message"] = true
		case *slackevents.AppMentionEvent:
			if in.Channel != "C0TEAM" || in.User != ann || in.TimeStamp != posted.TS {
				t.Fatalf("app_mention %+v", in)
			}
			seen["app_mention"] = true
		default:
			t.Fatalf("event %T", in)
		}
		h.ack(e)
	}
	if !seen["message"] || !seen["app_mention"] {
		t.Fatalf("events %v", seen)
	}

	// The bot answers in a thread; Ann replies there without a mention.
	_, ts, err := h.api.PostMessageContext(c, "C0TEAM", slack.MsgOptionText("*all good*", false), slack.MsgOptionTS(posted.TS))
	if err != nil {
		t.Fatal(err)
	}
	// The bot's own message comes back as an event with its bot_id.
	e := h.next(socketmode.EventTypeEventsAPI)
	if m := e.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent); m.BotID == "" || m.TimeStamp != ts || m.ThreadTimeStamp != posted.TS {
		t.Fatalf("echo %+v", m)
	}
	h.ack(e)
	reply, err := h.fake.Post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "thanks", ThreadTS: ts})
	if err != nil {
		t.Fatal(err)
	}
	e, ev := h.nextEvent()
	m := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if m.ThreadTimeStamp != posted.TS || m.TimeStamp != reply.TS || len(reply.EventIDs) != 1 {
		t.Fatalf("thread reply %+v (a reply to a reply belongs to the thread)", m)
	}
	h.ack(e)
	if th := h.fake.Thread("C0TEAM", posted.TS); len(th) != 3 {
		t.Fatalf("thread %+v", th)
	}
	if _, _, err := h.api.PostMessageContext(c, "C0NOPE", slack.MsgOptionText("x", false)); err == nil || err.Error() != "channel_not_found" {
		t.Fatalf("unknown channel: %v", err)
	}
	if _, _, err := h.api.PostMessageContext(c, "C0TEAM", slack.MsgOptionText("x", false), slack.MsgOptionTS("1.000001")); err == nil || err.Error() != "thread_not_found" {
		t.Fatalf("unknown thread: %v", err)
	}
	// Only the mention with app_mention subscribed alone.
	h.fake.SetSubscriptions("app_mention")
	if p, _ := h.fake.Post(fakeslack.Incoming{User: ann, Channel: "C0TEAM", Text: "no mention"}); len(p.EventIDs) != 0 {
		t.Fatalf("unsubscribed message raised %+v", p)
	}
}

func TestSDKFilesInAndOut(t *testing.T) {
	h := start(t)
	c := h.ctx
	data := bytes.Repeat([]byte("hello "), 1000)
	posted, err := h.fake.Post(fakeslack.Incoming{User: ann, Text: "see this", Files: []fakeslack.FileIn{{Name: "notes.txt", Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	e, ev := h.nextEvent()
	m := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	h.ack(e)
	if m.SubType != "file_share" || m.Message == nil || len(m.Message.Files) != 1 || m.Message.Files[0].ID != posted.Files[0] {
		t.Fatalf("file_share event %+v / %+v", m, m.Message)
	}
	f, _, _, err := h.api.GetFileInfoContext(c, posted.Files[0], 0, 0)
	if err != nil || f.Size != len(data) || f.Name != "notes.txt" || f.Mimetype != "text/plain; charset=utf-8" {
		t.Fatalf("files.info %+v %v", f, err)
	}
	var buf bytes.Buffer
	if err := h.api.GetFileContext(c, f.URLPrivateDownload, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %d bytes, %v", buf.Len(), err)
	}
	// Without the token Slack answers with its sign-in page, which slack-go
	// recognises.
	other := slack.New("xoxb-wrong", slack.OptionAPIURL(h.fake.APIURL()))
	if err := other.GetFileContext(c, f.URLPrivate, &buf); err == nil || !strings.Contains(err.Error(), "sign-in") {
		t.Fatalf("download without the token: %v", err)
	}
	if _, _, _, err := h.api.GetFileInfoContext(c, "F0NOPE", 0, 0); err == nil || err.Error() != "file_not_found" {
		t.Fatalf("unknown file: %v", err)
	}

	// The bot sends a file into the thread.
	out := []byte("report body\n")
	sum, err := h.api.UploadFileContext(c, slack.UploadFileParameters{
		Reader: bytes.NewReader(out), Filename: "report.md", FileSize: len(out), Title: "Report",
		Channel: m.Channel, ThreadTimestamp: m.TimeStamp, InitialComment: "here it is",
	})
	if err != nil {
		t.Fatal(err)
	}
	ups := h.fake.Uploads()
	if len(ups) != 1 || ups[0].FileID != sum.ID || ups[0].Title != "Report" || ups[0].Channel != m.Channel || ups[0].ThreadTS != m.TimeStamp || ups[0].Size != len(out) {
		t.Fatalf("uploads %+v (summary %+v)", ups, sum)
	}
	if got, _ := h.fake.FileData(sum.ID); !bytes.Equal(got, out) {
		t.Fatalf("uploaded %q", got)
	}
	if th := h.fake.Thread(m.Channel, m.TimeStamp); len(th) != 2 || len(th[1].Files) != 1 || th[1].Text != "here it is" {
		t.Fatalf("thread after upload %+v", th)
	}
	if _, err := h.api.CompleteUploadExternalContext(c, slack.CompleteUploadExternalParameters{Files: []slack.FileSummary{{ID: sum.ID}}, Channel: m.Channel}); err == nil || err.Error() != "file_not_found" {
		t.Fatalf("completing twice: %v", err)
	}
}

func TestSDKErrorsAndRateLimits(t *testing.T) {
	h := start(t, fakeslack.WithClock(clock.NewFake(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))))
	c := h.ctx
	ch := h.fake.DMChannel(ann)

	h.fake.RateLimit("chat.postMessage", 1, 7)
	_, _, err := h.api.PostMessageContext(c, ch, slack.MsgOptionText("hi", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("rate limited: %v", err)
	}
	if _, _, err := h.api.PostMessageContext(c, ch, slack.MsgOptionText("hi", false)); err != nil {
		t.Fatalf("after the limit: %v", err)
	}
	// Other methods are not limited.
	h.fake.RateLimit("chat.update", 0, 2)
	if _, err := h.api.AuthTestContext(c); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.api.UpdateMessageContext(c, ch, "1.0", slack.MsgOptionText("x", false)); !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("update limited: %v", err)
	}
	h.fake.ClearRateLimits()

	bad := slack.New("xoxb-nope", slack.OptionAPIURL(h.fake.APIURL()))
	if _, err := bad.AuthTestContext(c); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("bad token: %v", err)
	}
	if _, _, err := h.api.StartSocketModeContext(c); err != nil {
		t.Fatalf("apps.connections.open: %v", err)
	}
	wrongKind := slack.New(h.fake.BotToken(), slack.OptionAPIURL(h.fake.APIURL()), slack.OptionAppLevelToken(h.fake.BotToken()))
	if _, _, err := wrongKind.StartSocketModeContext(c); err == nil || err.Error() != "not_allowed_token_type" {
		t.Fatalf("bot token opening a socket: %v", err)
	}
	appOnly := slack.New(h.fake.AppToken(), slack.OptionAPIURL(h.fake.APIURL()))
	if _, _, err := appOnly.PostMessageContext(c, ch, slack.MsgOptionText("x", false)); err == nil || err.Error() != "not_allowed_token_type" {
		t.Fatalf("app token posting: %v", err)
	}

	// Blocks Slack refuses.
	long := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, strings.Repeat("x", fakeslack.MaxSectionTextLen+1), false, false), nil, nil)
	if _, _, err := h.api.PostMessageContext(c, ch, slack.MsgOptionBlocks(long)); err == nil || err.Error() != "invalid_blocks" {
		t.Fatalf("long section: %v", err)
	}
	// A text over 40,000 characters is truncated, and the fake says so.
	_, ts, err := h.api.PostMessageContext(c, ch, slack.MsgOptionText(strings.Repeat("é", fakeslack.MaxTextLen+5), false))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := h.fake.Message(ch, ts); !m.Truncated || len([]rune(m.Text)) != fakeslack.MaxTextLen {
		t.Fatalf("not truncated: %d %v", len([]rune(m.Text)), m.Truncated)
	}
	h.fake.FailNext("chat.postMessage", 1, "fatal_error")
	if _, _, err := h.api.PostMessageContext(c, ch, slack.MsgOptionText("x", false)); err == nil || err.Error() != "fatal_error" {
		t.Fatalf("injected failure: %v", err)
	}
}

func TestSDKRedeliveryOfUnacknowledgedEnvelopes(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	h := start(t, fakeslack.WithClock(clk), fakeslack.WithAckTimeout(3*time.Second), fakeslack.WithPingInterval(time.Hour))
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h.fake.HoldAcks(true)
	posted, err := h.fake.Post(fakeslack.Incoming{User: ann, Text: "once"})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt <= fakeslack.MaxRetries; attempt++ {
		e, ev := h.nextEvent()
		if e.Request.EnvelopeID != posted.Envelopes[0] || e.Request.RetryAttempt != attempt || ev.Data.(*slackevents.EventsAPICallbackEvent).EventID != posted.EventIDs[0] {
			t.Fatalf("delivery %d: envelope %s attempt %d", attempt, e.Request.EnvelopeID, e.Request.RetryAttempt)
		}
		if want := map[bool]string{true: "timeout", false: ""}[attempt > 0]; e.Request.RetryReason != want {
			t.Fatalf("delivery %d: retry_reason %q", attempt, e.Request.RetryReason)
		}
		h.ack(e) // held: ignored
		h.waitFor("the held ack", func() bool { return len(h.fake.Acks()) == attempt+1 })
		if err := clk.BlockUntil(c, 2); err != nil { // the ping timer and the ack timer
			t.Fatal(err)
		}
		clk.Advance(3 * time.Second)
	}
	h.waitFor("giving up", func() bool { e, _ := h.fake.Envelope(posted.Envelopes[0]); return e.GaveUp })
	env, _ := h.fake.Envelope(posted.Envelopes[0])
	if env.Acked || env.Deliveries != fakeslack.MaxRetries+1 {
		t.Fatalf("envelope %+v", env)
	}
	for _, a := range h.fake.Acks() {
		if !a.Held {
			t.Fatalf("ack %+v not held", a)
		}
	}

	// Acknowledged in time: never sent again.
	h.fake.HoldAcks(false)
	posted, _ = h.fake.Post(fakeslack.Incoming{User: ann, Text: "twice"})
	e, _ := h.nextEvent()
	h.ack(e)
	h.waitFor("the ack", func() bool { return h.acked(posted.Envelopes[0]) })
	clk.Advance(time.Minute)
	if env, _ := h.fake.Envelope(posted.Envelopes[0]); env.Deliveries != 1 {
		t.Fatalf("acknowledged envelope delivered %d times", env.Deliveries)
	}
}

func TestSDKDisconnectDropAndOutage(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	h := start(t, fakeslack.WithClock(clk), fakeslack.WithPingInterval(time.Hour))
	c := h.ctx

	// A disconnect request: slack-go connects again.
	if n := h.fake.Disconnect(fakeslack.ReasonRefreshRequested); n != 1 {
		t.Fatalf("disconnect reached %d connections", n)
	}
	if e := h.next(socketmode.EventTypeConnected); e.Data.(*socketmode.ConnectedEvent).ConnectionCount != 1 {
		t.Fatalf("reconnect %+v", e.Data)
	}
	h.waitFor("one connection", func() bool { return h.fake.Connections() == 1 })

	// An envelope sent and then lost with a dropped connection comes back
	// on the next one as a retry.
	h2 := h.fake
	h2.HoldAcks(true)
	posted, _ := h2.Post(fakeslack.Incoming{User: ann, Text: "lost?"})
	e, _ := h.nextEvent()
	h.ack(e)
	h.waitFor("held ack", func() bool { return len(h2.Acks()) == 1 })
	h2.HoldAcks(false)
	wctx, cancel := context.WithTimeout(c, 10*time.Second)
	defer cancel()
	if err := clk.BlockUntil(wctx, 2); err != nil { // the ping timer and the ack timer
		t.Fatal(err)
	}
	if n := h2.Drop(); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	h.next(socketmode.EventTypeConnected)
	clk.Advance(3 * time.Second) // the acknowledgement timeout
	e, _ = h.nextEvent()
	if e.Request.EnvelopeID != posted.Envelopes[0] || e.Request.RetryAttempt != 1 || e.Request.RetryReason != "timeout" {
		t.Fatalf("redelivery %+v", e.Request)
	}
	h.ack(e)
	h.waitFor("the ack", func() bool { return h.acked(posted.Envelopes[0]) })

	// Slack down: connections refused, then back.
	h2.SetMode(fakeslack.ModeRefuse)
	h.next(socketmode.EventTypeConnectionError)
	if _, err := h.api.AuthTestContext(c); err == nil {
		t.Fatal("auth.test succeeded while down")
	}
	posted, _ = h2.Post(fakeslack.Incoming{User: ann, Text: "while down"})
	h2.SetMode(fakeslack.ModeUp)
	h.next(socketmode.EventTypeConnected)
	e, _ = h.nextEvent()
	if e.Request.EnvelopeID != posted.Envelopes[0] || e.Request.RetryAttempt != 0 {
		t.Fatalf("queued while down %+v", e.Request)
	}
	h.ack(e)
	var env fakeslack.Envelope
	h.waitFor("the ack", func() bool { env, _ = h2.Envelope(posted.Envelopes[0]); return env.Acked })
	raw, _ := json.Marshal(env)
	if !strings.Contains(string(raw), `"acked":true`) {
		t.Fatalf("envelope JSON %s", raw)
	}
}
