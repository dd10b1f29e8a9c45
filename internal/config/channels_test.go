package config

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestChannelKeys(t *testing.T) {
	isolate(t)
	cfg, err := Parse([]byte("channels:\n  - kind: telegram\n    token_file: tg.token\n    allow: [12345, \"678\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ch := cfg.Channels[0]
	if ch.Name != "telegram" || ch.APIURL != DefaultTelegramAPI || ch.MaxAttachment != 20*MiB ||
		len(ch.Allow) != 2 || ch.Allow[0] != "12345" || ch.Allow[1] != "678" {
		t.Fatalf("defaults: %+v", ch)
	}
	if !filepath.IsAbs(ch.TokenFile) || filepath.Base(ch.TokenFile) != "tg.token" {
		t.Fatalf("token_file not made absolute: %q", ch.TokenFile)
	}
	cfg, err = Parse([]byte("channels:\n  - kind: telegram\n    name: work\n    token_file: /x\n    api_url: http://127.0.0.1:8081\n    max_attachment: 1MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ch := cfg.Channels[0]; ch.Name != "work" || ch.APIURL != "http://127.0.0.1:8081" || ch.MaxAttachment != MiB || ch.Allow != nil {
		t.Fatalf("given: %+v", ch)
	}
	cfg, err = Parse([]byte("channels:\n  - kind: slack\n    bot_token_file: bot.token\n    app_token_file: ~/app.token\n    allow: [U0ANN, W012AB]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ch := cfg.Channels[0]; ch.Name != "slack" || ch.APIURL != DefaultSlackAPI || !filepath.IsAbs(ch.BotTokenFile) ||
		!filepath.IsAbs(ch.AppTokenFile) || len(ch.Allow) != 2 || ch.MaxAttachment != DefaultMaxAttachment {
		t.Fatalf("slack defaults: %+v", ch)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"channels:\n  - kind: irc\n    token_file: /x\n", "channels[0].kind"},
		{"channels:\n  - kind: slack\n    app_token_file: /a\n", "channels[0].bot_token_file"},
		{"channels:\n  - kind: slack\n    bot_token_file: /b\n", "channels[0].app_token_file"},
		{"channels:\n  - kind: slack\n    bot_token_file: /b\n    app_token_file: /a\n    token_file: /x\n", "channels[0].token_file"},
		{"channels:\n  - kind: slack\n    bot_token_file: /b\n    app_token_file: /a\n    allow: [\"42\"]\n", "channels[0].allow[0]"},
		{"channels:\n  - kind: slack\n    bot_token_file: /b\n    app_token_file: /a\n    allow: [U0ANN, u0bob]\n", "channels[0].allow[1]"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    bot_token_file: /b\n", "channels[0].bot_token_file"},
		{"channels:\n  - token_file: /x\n", "channels[0].kind"},
		{"channels:\n  - kind: telegram\n", "channels[0].token_file"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    api_url: ftp://x\n", "channels[0].api_url"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    api_url: nohost\n", "channels[0].api_url"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    allow: [alice]\n", "channels[0].allow[0]"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    allow: [1, -2]\n", "channels[0].allow[1]"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    name: a b\n", "channels[0].name"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n  - kind: telegram\n    token_file: /y\n", "channels[1].name"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    bogus: 1\n", "channels[0].bogus"},
		{"channels:\n  - kind: telegram\n    token_file: /x\n    max_attachment: -1\n", "channels[0].max_attachment"},
		{"channels: {kind: telegram}\n", "channels"},
	} {
		_, err := Parse([]byte(tc.yaml))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%q: error %v, want key %s", tc.yaml, err, tc.key)
		}
	}
}
