package faketelegram_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"
	"go.uber.org/goleak"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness runs the fake on loopback and a go-telegram/bot client polling it.
type harness struct {
	t       *testing.T
	fake    *faketelegram.Server
	bot     *bot.Bot
	updates chan *models.Update
	mu      sync.Mutex
	errs    []error
}

func start(t *testing.T, opts ...faketelegram.Option) *harness {
	t.Helper()
	fake := faketelegram.New(opts...)
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, fake: fake, updates: make(chan *models.Update, 100)}
	tr := &http.Transport{}
	b, err := bot.New(fake.Token(),
		bot.WithServerURL(fake.URL()),
		bot.WithHTTPClient(10*time.Second, &http.Client{Transport: tr, Timeout: 20 * time.Second}),
		bot.WithDefaultHandler(func(ctx context.Context, b *bot.Bot, u *models.Update) { h.updates <- u }),
		bot.WithErrorsHandler(func(err error) { h.mu.Lock(); h.errs = append(h.errs, err); h.mu.Unlock() }),
		bot.WithNotAsyncHandlers(),
	)
	if err != nil {
		t.Fatal(err)
	}
	h.bot = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		fake.Close()
		tr.CloseIdleConnections()
	})
	return h
}

func (h *harness) next() *models.Update {
	h.t.Helper()
	select {
	case u := <-h.updates:
		return u
	case <-time.After(10 * time.Second):
		h.t.Fatal("no update reached the bot")
		return nil
	}
}

var ann = faketelegram.User{ID: 7001, FirstName: "Ann", Username: "ann_example"}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSDKConversation(t *testing.T) {
	h := start(t)
	c := ctx(t)

	me, err := h.bot.GetMe(c)
	if err != nil || !me.IsBot || me.Username != h.fake.Bot().Username || !me.CanReadAllGroupMessages {
		t.Fatalf("getMe: %+v %v", me, err)
	}

	// The person writes; the bot gets the message with its command entity.
	if _, err := h.fake.SendText(ann, "/status please"); err != nil {
		t.Fatal(err)
	}
	u := h.next()
	if u.Message == nil || u.Message.Text != "/status please" || u.Message.Chat.ID != ann.ID || u.Message.From.ID != ann.ID {
		t.Fatalf("update %+v", u)
	}
	if len(u.Message.Entities) != 1 || u.Message.Entities[0].Type != models.MessageEntityTypeBotCommand || u.Message.Entities[0].Length != 7 {
		t.Fatalf("entities %+v", u.Message.Entities)
	}

	// Typing, then an HTML reply with permission buttons.
	if ok, err := h.bot.SendChatAction(c, &bot.SendChatActionParams{ChatID: ann.ID, Action: models.ChatActionTyping}); !ok || err != nil {
		t.Fatalf("sendChatAction: %v %v", ok, err)
	}
	kb := &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{
		{Text: "Allow once", CallbackData: "perm:1:allow"},
		{Text: "Deny", CallbackData: "perm:1:deny"},
	}}}
	m, err := h.bot.SendMessage(c, &bot.SendMessageParams{
		ChatID: ann.ID, Text: "<b>Run</b> <code>touch x</code> &amp; more?", ParseMode: models.ParseModeHTML,
		ReplyMarkup: kb, ReplyParameters: &models.ReplyParameters{MessageID: u.Message.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Run touch x & more?" || len(m.Entities) != 2 || m.Entities[1].Type != models.MessageEntityTypeCode || m.Entities[1].Offset != 4 {
		t.Fatalf("sent message %+v", m)
	}
	if m.ReplyToMessage == nil || m.ReplyToMessage.ID != u.Message.ID {
		t.Fatalf("reply_to %+v", m.ReplyToMessage)
	}
	sent := h.fake.Sent(ann.ID)
	if len(sent) != 1 || sent[0].MessageID != int64(m.ID) || sent[0].ReplyMarkup == nil || sent[0].ReplyMarkup.InlineKeyboard[0][1].CallbackData != "perm:1:deny" {
		t.Fatalf("fake saw %+v", sent)
	}

	// The person presses Deny; the bot answers and removes the buttons.
	pu, err := h.fake.Press(ann.ID, int64(m.ID), ann, "perm:1:deny")
	if err != nil {
		t.Fatal(err)
	}
	u = h.next()
	if u.CallbackQuery == nil || u.CallbackQuery.Data != "perm:1:deny" || u.CallbackQuery.From.ID != ann.ID || u.CallbackQuery.Message.Message == nil || u.CallbackQuery.Message.Message.ID != m.ID {
		t.Fatalf("callback update %+v", u)
	}
	if ok, err := h.bot.AnswerCallbackQuery(c, &bot.AnswerCallbackQueryParams{CallbackQueryID: u.CallbackQuery.ID, Text: "Denied"}); !ok || err != nil {
		t.Fatalf("answerCallbackQuery: %v %v", ok, err)
	}
	if a, ok := h.fake.Answer(pu.CallbackQuery.ID); !ok || a.Text != "Denied" {
		t.Fatalf("answer %+v %v", a, ok)
	}
	if _, err := h.bot.AnswerCallbackQuery(c, &bot.AnswerCallbackQueryParams{CallbackQueryID: u.CallbackQuery.ID}); !errors.Is(err, bot.ErrorBadRequest) {
		t.Fatalf("second answer: %v", err)
	}
	if _, err := h.bot.EditMessageReplyMarkup(c, &bot.EditMessageReplyMarkupParams{ChatID: ann.ID, MessageID: m.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.bot.EditMessageReplyMarkup(c, &bot.EditMessageReplyMarkupParams{ChatID: ann.ID, MessageID: m.ID}); err == nil || !strings.Contains(err.Error(), "message is not modified") {
		t.Fatalf("unchanged markup: %v", err)
	}

	// Progress as one edited message; an identical edit is refused.
	edit := &bot.EditMessageTextParams{ChatID: ann.ID, MessageID: m.ID, Text: "<i>Denied.</i>", ParseMode: models.ParseModeHTML}
	if _, err := h.bot.EditMessageText(c, edit); err != nil {
		t.Fatal(err)
	}
	if _, err := h.bot.EditMessageText(c, edit); !errors.Is(err, bot.ErrorBadRequest) || !strings.Contains(err.Error(), "message is not modified") {
		t.Fatalf("same edit: %v", err)
	}
	sent = h.fake.Sent(ann.ID)
	if sent[0].Text != "Denied." || sent[0].ReplyMarkup != nil || len(sent[0].Edits) != 1 || sent[0].Edits[0] != "Run touch x & more?" {
		t.Fatalf("after edits %+v", sent[0])
	}

	// Commands.
	cmds := []models.BotCommand{{Command: "new", Description: "Start a clean conversation"}, {Command: "status", Description: "Health and queue"}, {Command: "stop", Description: "Stop the turn"}}
	if ok, err := h.bot.SetMyCommands(c, &bot.SetMyCommandsParams{Commands: cmds}); !ok || err != nil {
		t.Fatalf("setMyCommands %v %v", ok, err)
	}
	got, err := h.bot.GetMyCommands(c, &bot.GetMyCommandsParams{})
	if err != nil || len(got) != 3 || got[2].Command != "stop" {
		t.Fatalf("getMyCommands %+v %v", got, err)
	}
	if len(h.fake.Commands("", "")) != 3 {
		t.Fatal("fake does not list the commands")
	}
	if _, err := h.bot.SetMyCommands(c, &bot.SetMyCommandsParams{Commands: []models.BotCommand{{Command: "New!", Description: "x"}}}); !errors.Is(err, bot.ErrorBadRequest) {
		t.Fatalf("bad command: %v", err)
	}

	// A photo in: getFile and the download link.
	photo := bytes.Repeat([]byte{0xff, 0xd8, 0xff}, 1000)
	if _, err := h.fake.Send(faketelegram.Incoming{From: ann, Text: "look", Photo: photo}); err != nil {
		t.Fatal(err)
	}
	u = h.next()
	if len(u.Message.Photo) != 2 || u.Message.Caption != "look" || u.Message.Photo[0].FileSize >= u.Message.Photo[1].FileSize {
		t.Fatalf("photo update %+v", u.Message)
	}
	f, err := h.bot.GetFile(c, &bot.GetFileParams{FileID: u.Message.Photo[1].FileID})
	if err != nil || f.FileSize != int64(len(photo)) {
		t.Fatalf("getFile %+v %v", f, err)
	}
	resp, err := http.Get(h.bot.FileDownloadLink(f))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, photo) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}

	// A document out, uploaded as multipart.
	doc := []byte("col1,col2\n1,2\n")
	dm, err := h.bot.SendDocument(c, &bot.SendDocumentParams{
		ChatID: ann.ID, Document: &models.InputFileUpload{Filename: "report.csv", Data: bytes.NewReader(doc)},
		Caption: "<b>report</b>", ParseMode: models.ParseModeHTML,
	})
	if err != nil {
		t.Fatal(err)
	}
	if dm.Document == nil || dm.Document.FileName != "report.csv" || dm.Document.FileSize != int64(len(doc)) || dm.Caption != "report" {
		t.Fatalf("document message %+v", dm)
	}
	if data, ok := h.fake.FileData(dm.Document.FileID); !ok || !bytes.Equal(data, doc) {
		t.Fatal("fake did not keep the document")
	}

	// Delete; every operation was logged in order.
	if ok, err := h.bot.DeleteMessage(c, &bot.DeleteMessageParams{ChatID: ann.ID, MessageID: dm.ID}); !ok || err != nil {
		t.Fatalf("deleteMessage %v %v", ok, err)
	}
	var methods []string
	for _, op := range h.fake.Ops(ann.ID) {
		methods = append(methods, op.Method)
	}
	want := "sendChatAction sendMessage answerCallbackQuery editMessageReplyMarkup editMessageText sendDocument deleteMessage"
	if strings.Join(methods, " ") != want {
		t.Fatalf("ops %v, want %s", methods, want)
	}
	if a := h.fake.ChatActions(ann.ID); len(a) != 1 || a[0] != "typing" {
		t.Fatalf("chat actions %v", a)
	}
}

func TestSDKErrors(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	h := start(t, faketelegram.WithClock(clk))
	c := ctx(t)

	if _, err := bot.New("999:wrong", bot.WithServerURL(h.fake.URL())); !errors.Is(err, bot.ErrorUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: 424242, Text: "hi"}); !errors.Is(err, bot.ErrorBadRequest) || !strings.Contains(err.Error(), "chat not found") {
		t.Fatalf("unknown chat: %v", err)
	}
	h.fake.AddChat(faketelegram.Chat{ID: ann.ID})

	for _, tc := range []struct{ text, want string }{
		{"<b>open", `can't parse entities: Can't find end tag corresponding to start tag "b"`},
		{"<h1>x</h1>", `can't parse entities: Unsupported start tag "h1" at byte offset 0`},
		{"a <b>b</i>", `can't parse entities: Unmatched end tag at byte offset 6, expected "</b>", found "</i>"`},
		{"x</b>", `can't parse entities: Unexpected end tag at byte offset 1`},
		{"1 < 2", `can't parse entities: Unsupported start tag "" at byte offset 2`},
		{strings.Repeat("é", 4097), "message is too long"},
		{"  \n ", "message text is empty"},
	} {
		_, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: tc.text, ParseMode: models.ParseModeHTML})
		if !errors.Is(err, bot.ErrorBadRequest) || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
	// 4096 UTF-16 units is the limit: 2048 emoji (surrogate pairs) fit, 2049 do not.
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: strings.Repeat("😀", 2048)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: strings.Repeat("😀", 2049)}); err == nil {
		t.Fatal("4098 UTF-16 units accepted")
	}
	// Markup beyond the limit does not count: 4096 characters in tags pass.
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "<pre><code class=\"language-go\">" + strings.Repeat("&lt;", 4096) + "</code></pre>", ParseMode: models.ParseModeHTML}); err != nil {
		t.Fatal(err)
	}

	// The next two sends are rate limited, then it goes through.
	h.fake.FailNext("sendMessage", 2, faketelegram.Fault{RetryAfter: 3})
	for range 2 {
		_, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "hi"})
		var tm *bot.TooManyRequestsError
		if !errors.As(err, &tm) || tm.RetryAfter != 3 {
			t.Fatalf("injected 429: %v", err)
		}
	}
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "hi"}); err != nil {
		t.Fatal(err)
	}

	// A chat limit holds every call for that chat until the clock passes it.
	h.fake.LimitChat(ann.ID, 2500*time.Millisecond)
	_, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "hi"})
	var tm *bot.TooManyRequestsError
	if !errors.As(err, &tm) || tm.RetryAfter != 3 {
		t.Fatalf("chat limit: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := h.bot.SendChatAction(c, &bot.SendChatActionParams{ChatID: ann.ID, Action: models.ChatActionTyping}); !errors.As(err, &tm) || tm.RetryAfter != 1 {
		t.Fatalf("chat limit after 2s: %v", err)
	}
	clk.Advance(500 * time.Millisecond)
	if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "hi"}); err != nil {
		t.Fatalf("after the limit: %v", err)
	}

	// Buttons with too much callback data are refused.
	_, err = h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{
		InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "b", CallbackData: strings.Repeat("d", 65)}}}}})
	if err == nil || !strings.Contains(err.Error(), "BUTTON_DATA_INVALID") {
		t.Fatalf("65-byte callback data: %v", err)
	}
}

// TestSDKOutage takes the API down both ways while the client polls; the
// client's errors are its own, and it picks up the waiting update once the
// API is back.
func TestSDKOutage(t *testing.T) {
	for _, mode := range []faketelegram.Mode{faketelegram.ModeRefuse, faketelegram.Mode502} {
		t.Run(string(mode), func(t *testing.T) {
			h := start(t)
			c := ctx(t)
			h.fake.SetMode(mode)
			if _, err := h.fake.SendText(ann, "while you were out"); err != nil {
				t.Fatal(err)
			}
			if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "hi"}); err == nil {
				t.Fatal("send while down succeeded")
			}
			h.fake.SetMode(faketelegram.ModeUp)
			if u := h.next(); u.Message == nil || u.Message.Text != "while you were out" {
				t.Fatalf("update after outage %+v", u)
			}
			if _, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: ann.ID, Text: "back"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSDKGroup(t *testing.T) {
	h := start(t)
	c := ctx(t)
	group := faketelegram.Chat{ID: -1001234, Type: faketelegram.ChatSupergroup, Title: "team"}
	bob := faketelegram.User{ID: 7002, FirstName: "Bob"}

	if _, err := h.fake.Send(faketelegram.Incoming{Chat: group, From: bob, Text: "lunch?"}); err != nil {
		t.Fatal(err)
	}
	if u := h.next(); u.Message.Chat.Type != models.ChatTypeSupergroup || u.Message.Chat.Title != "team" || len(u.Message.Entities) != 0 {
		t.Fatalf("group message %+v", u.Message)
	}
	if _, err := h.fake.Send(faketelegram.Incoming{Chat: group, From: bob, Text: "@" + h.fake.Bot().Username + " what's up"}); err != nil {
		t.Fatal(err)
	}
	u := h.next()
	if e := u.Message.Entities; len(e) != 1 || e[0].Type != models.MessageEntityTypeMention || e[0].Offset != 0 || e[0].Length != len(h.fake.Bot().Username)+1 {
		t.Fatalf("mention entities %+v", e)
	}
	m, err := h.bot.SendMessage(c, &bot.SendMessageParams{ChatID: group.ID, Text: "all good"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.fake.Send(faketelegram.Incoming{Chat: group, From: bob, Text: "thanks", ReplyTo: int64(m.ID)}); err != nil {
		t.Fatal(err)
	}
	u = h.next()
	if u.Message.ReplyToMessage == nil || u.Message.ReplyToMessage.ID != m.ID || u.Message.ReplyToMessage.From.ID != h.bot.ID() {
		t.Fatalf("reply %+v", u.Message.ReplyToMessage)
	}
	if _, err := h.fake.Send(faketelegram.Incoming{Chat: group, From: bob, Text: "/stop@" + h.fake.Bot().Username}); err != nil {
		t.Fatal(err)
	}
	u = h.next()
	if e := u.Message.Entities; len(e) != 1 || e[0].Type != models.MessageEntityTypeBotCommand || e[0].Length != len(u.Message.Text) {
		t.Fatalf("command entities %+v", e)
	}
	if _, err := h.fake.Send(faketelegram.Incoming{Chat: group, From: bob, Document: []byte("%PDF-1.4"), FileName: "spec.pdf", MimeType: "application/pdf"}); err != nil {
		t.Fatal(err)
	}
	u = h.next()
	if d := u.Message.Document; d == nil || d.FileName != "spec.pdf" || d.MimeType != "application/pdf" || d.FileSize != 8 {
		t.Fatalf("document %+v", d)
	}
}

// BenchmarkSDKSendMessage measures one sendMessage with HTML through
// go-telegram/bot against the fake on loopback: the floor under the
// channel's reply → sendMessage latency.
func BenchmarkSDKSendMessage(b *testing.B) {
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	fake.AddChat(faketelegram.Chat{ID: ann.ID})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	bt, err := bot.New(fake.Token(), bot.WithServerURL(fake.URL()), bot.WithSkipGetMe(),
		bot.WithHTTPClient(10*time.Second, &http.Client{Transport: tr}))
	if err != nil {
		b.Fatal(err)
	}
	params := &bot.SendMessageParams{ChatID: ann.ID, Text: "<b>done</b>: " + strings.Repeat("word ", 100), ParseMode: models.ParseModeHTML}
	b.ResetTimer()
	for b.Loop() {
		if _, err := bt.SendMessage(context.Background(), params); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSDKUpdateToHandler measures a person's message reaching a
// go-telegram/bot handler through a waiting long poll.
func BenchmarkSDKUpdateToHandler(b *testing.B) {
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	got := make(chan struct{}, 1)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	bt, err := bot.New(fake.Token(), bot.WithServerURL(fake.URL()), bot.WithSkipGetMe(),
		bot.WithHTTPClient(10*time.Second, &http.Client{Transport: tr}),
		bot.WithNotAsyncHandlers(),
		bot.WithDefaultHandler(func(context.Context, *bot.Bot, *models.Update) { got <- struct{}{} }))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { bt.Start(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	b.ResetTimer()
	for b.Loop() {
		if _, err := fake.SendText(ann, "hello"); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
