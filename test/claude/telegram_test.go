package claude

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/fakeapi"
	"github.com/dispatchd/dispatch/internal/faketelegram"
)

// These tests run the real daemon and the real CLI with a Telegram
// channel on the fake Bot API: the person answers permission requests
// with the chat's buttons and stops turns with /stop.

var ann = faketelegram.User{ID: 42, FirstName: "Ann"}

// telegramRig starts the fake Telegram and a daemon (real CLI, fake API in
// mode) with a Telegram channel that allows Ann.
func telegramRig(t *testing.T, mode fakeapi.Mode, set map[string]any) (*rig, *faketelegram.Server) {
	t.Helper()
	bin := claudeBin(t) // skips before anything starts
	_ = bin
	fake := faketelegram.New()
	if err := fake.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	tok := filepath.Join(t.TempDir(), "telegram.token")
	if err := os.WriteFile(tok, []byte(fake.Token()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startYAML(t, mode, set, fmt.Sprintf(`
channels:
  - kind: telegram
    token_file: %s
    api_url: %s
    allow: [42]
`, tok, fake.URL()))
	return r, fake
}

// waitChat waits until cond holds of what the bot sent to chat 42.
func waitChat(t *testing.T, fake *faketelegram.Server, what string, cond func([]faketelegram.SentMessage) bool) []faketelegram.SentMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), turnTimeout)
	defer cancel()
	if err := fake.WaitFor(ctx, func() bool { return cond(fake.Sent(42)) }); err != nil {
		t.Fatalf("%s: chat 42 got %+v", what, fake.Sent(42))
	}
	return fake.Sent(42)
}

// TestTelegramPermissionButton: with agent.permissions: ask, the CLI's
// request shows in the chat with buttons; Ann's "Allow once" runs the
// tool, the reply says so, the buttons give way to the decision, and the
// turn's progress ended as one compact status line.
func TestTelegramPermissionButton(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, fake := telegramRig(t, fakeapi.ModeOK, map[string]any{"agent.permissions": "ask", "agent.dir": dir})
	if _, err := fake.SendText(ann, touchPrompt("pressed.txt")); err != nil {
		t.Fatal(err)
	}
	var req faketelegram.SentMessage
	waitChat(t, fake, "the request's buttons", func(s []faketelegram.SentMessage) bool {
		for _, m := range s {
			if m.ReplyMarkup != nil && len(m.ReplyMarkup.InlineKeyboard) == 1 {
				req = m
				return true
			}
		}
		return false
	})
	if !strings.Contains(req.Text, "Bash") || !strings.Contains(req.Text, "touch pressed.txt") {
		t.Errorf("request message %q", req.Text)
	}
	if fileIn(dir, "tg:42", "pressed.txt") {
		t.Fatal("the tool ran before anyone answered")
	}
	var data string
	for _, b := range req.ReplyMarkup.InlineKeyboard[0] {
		if b.Text == "Allow once" {
			data = b.CallbackData
		}
	}
	u, err := fake.Press(42, req.MessageID, ann, data)
	if err != nil {
		t.Fatal(err)
	}
	waitChat(t, fake, "the reply after the tool ran", func(s []faketelegram.SentMessage) bool {
		for _, m := range s {
			if strings.HasPrefix(m.Text, "fake reply after tools: Bash ok") {
				return true
			}
		}
		return false
	})
	if a, ok := fake.Answer(u.CallbackQuery.ID); !ok || !strings.Contains(a.Text, "Allowed once by telegram:42") {
		t.Errorf("the press was answered %+v (%v)", a, ok)
	}
	if !fileIn(dir, "tg:42", "pressed.txt") {
		t.Error("the allowed touch did not run")
	}
	waitChat(t, fake, "the buttons removed", func(s []faketelegram.SentMessage) bool {
		for _, m := range s {
			if m.MessageID == req.MessageID {
				return m.ReplyMarkup == nil && strings.Contains(m.Text, "Allowed once by telegram:42")
			}
		}
		return false
	})
	waitChat(t, fake, "the status message's last line", func(s []faketelegram.SentMessage) bool {
		for _, m := range s {
			if strings.HasPrefix(m.Text, "✓ Done: 1 step — Bash") {
				return true
			}
		}
		return false
	})
	if dec := r.feed("tg:42", "permission_decided"); len(dec) != 1 || dec[0].By != "telegram:42" || dec[0].Decision != "allow" {
		t.Errorf("permission_decided %+v", dec)
	}

	// /stop while a request waits: the CLI withdraws the request and ends
	// the turn; the buttons say it expired, the person gets "Stopped.".
	n := len(fake.Sent(42))
	if _, err := fake.SendText(ann, touchPrompt("never.txt")); err != nil {
		t.Fatal(err)
	}
	var req2 faketelegram.SentMessage
	waitChat(t, fake, "the second request's buttons", func(s []faketelegram.SentMessage) bool {
		for _, m := range s[n:] {
			if m.ReplyMarkup != nil && len(m.ReplyMarkup.InlineKeyboard) == 1 {
				req2 = m
				return true
			}
		}
		return false
	})
	if _, err := fake.SendText(ann, "/stop"); err != nil {
		t.Fatal(err)
	}
	waitChat(t, fake, "Stopped. and the expired request", func(s []faketelegram.SentMessage) bool {
		stopped, expired := false, false
		for _, m := range s {
			stopped = stopped || m.Text == "Stopped."
			expired = expired || (m.MessageID == req2.MessageID && m.ReplyMarkup == nil && strings.Contains(m.Text, "Expired"))
		}
		return stopped && expired
	})
	if fileIn(dir, "tg:42", "never.txt") {
		t.Error("the stopped turn's tool ran")
	}
	if st := r.idle("tg:42"); st.Restarts != 0 {
		t.Errorf("%d restarts after /stop", st.Restarts)
	}
}

// TestTelegramStop: /stop ends a turn waiting on a slow API: the person
// gets one "Stopped." line, the message is done and not retried, and the
// CLI was interrupted, not restarted: the same process answers the next
// message, in the same conversation.
func TestTelegramStop(t *testing.T) {
	t.Parallel()
	r, fake := telegramRig(t, fakeapi.ModeOK, nil)
	if _, err := fake.SendText(ann, "warm up"); err != nil {
		t.Fatal(err)
	}
	waitChat(t, fake, "the first reply", func(s []faketelegram.SentMessage) bool { return len(s) == 1 })
	pid := r.idle("tg:42").Pid
	r.api.SetSlow(10 * time.Minute)
	r.api.SetMode(fakeapi.ModeSlow)
	if _, err := fake.SendText(ann, "take your time"); err != nil {
		t.Fatal(err)
	}
	r.d.WaitFor(func() bool { return len(r.requestsIn(fakeapi.ModeSlow)) > 0 }, turnTimeout, "the slow turn at the API")
	if _, err := fake.SendText(ann, "/stop"); err != nil {
		t.Fatal(err)
	}
	waitChat(t, fake, "Stopped.", func(s []faketelegram.SentMessage) bool { return len(s) == 2 && s[1].Text == "Stopped." })
	r.api.SetMode(fakeapi.ModeOK)
	if _, err := fake.SendText(ann, "and now?"); err != nil {
		t.Fatal(err)
	}
	s := waitChat(t, fake, "the next reply", func(s []faketelegram.SentMessage) bool { return len(s) == 3 })
	if !strings.Contains(s[2].Text, "and now?") || replyN(t, s[2].Text) < 2 {
		t.Errorf("next reply %q: want it in the same conversation", s[2].Text)
	}
	st := r.idle("tg:42")
	if st.Pid != pid || st.Restarts != 0 {
		t.Errorf("after /stop: pid %d (was %d), %d restarts; want the same process", st.Pid, pid, st.Restarts)
	}
	if out, _, code := r.d.Run("queue", "list", "--chat", "tg:42", "--state", "dead"); code != 0 || strings.Contains(out, "take your time") {
		t.Errorf("the stopped message is dead: %s", out)
	}
	// The operators' stop: nothing runs now; an unknown chat is an error.
	if out, errOut, code := r.d.Run("sessions", "stop", "tg:42"); code != 0 || !strings.Contains(out, "no turn running") {
		t.Errorf("sessions stop: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := r.d.Run("sessions", "stop", "tg:999"); code != 1 {
		t.Errorf("sessions stop of an unknown chat exited %d, want 1", code)
	}
	if cmds := fake.Commands("", ""); len(cmds) != 3 || cmds[2].Command != "stop" {
		t.Errorf("commands registered: %+v", cmds)
	}
}
