package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"unicode/utf8"
)

// Channel is one of the person's own chat apps the daemon talks to
// directly: Telegram or Slack.
type Channel struct {
	// Kind is the platform: telegram or slack.
	Kind string `yaml:"kind"`
	// Name identifies the channel in status and names its state in the
	// database (default: the kind).
	Name string `yaml:"name"`
	// TokenFile holds the bot's token; a file group or others may read is
	// refused.
	TokenFile string `yaml:"token_file"`
	// BotTokenFile (Slack) holds the bot token (xoxb-…) the Web API is
	// called with; AppTokenFile the app-level token (xapp-…) that opens
	// Socket Mode connections. Both are refused when group or others may
	// read them.
	BotTokenFile string `yaml:"bot_token_file"`
	AppTokenFile string `yaml:"app_token_file"`
	// APIURL is the platform's base URL (a self-hosted Bot API server, a
	// fake in tests).
	APIURL string `yaml:"api_url"`
	// Allow lists the platform user ids that may talk to the agent.
	Allow []string `yaml:"allow"`
	// MaxAttachment is the largest attachment taken in.
	MaxAttachment Size `yaml:"max_attachment"`
}

// Channel kinds.
const (
	ChannelTelegram = "telegram"
	ChannelSlack    = "slack"
)

// Channel defaults.
const (
	DefaultTelegramAPI   = "https://api.telegram.org"
	DefaultSlackAPI      = "https://slack.com/api/"
	DefaultMaxAttachment = 20 * MiB
)

// channelDefaults fills each channel's unset name, api_url and
// max_attachment.
func (c *Config) channelDefaults() {
	for i := range c.Channels {
		ch := &c.Channels[i]
		if ch.Name == "" {
			ch.Name = ch.Kind
		}
		if ch.APIURL == "" {
			switch ch.Kind {
			case ChannelTelegram:
				ch.APIURL = DefaultTelegramAPI
			case ChannelSlack:
				ch.APIURL = DefaultSlackAPI
			}
		}
		if ch.MaxAttachment == 0 {
			ch.MaxAttachment = DefaultMaxAttachment
		}
	}
}

// resolveChannelPaths expands "~" in and makes absolute each token file.
func (c *Config) resolveChannelPaths() error {
	for i := range c.Channels {
		ch := &c.Channels[i]
		for _, f := range []struct {
			key string
			p   *string
		}{{"token_file", &ch.TokenFile}, {"bot_token_file", &ch.BotTokenFile}, {"app_token_file", &ch.AppTokenFile}} {
			if *f.p == "" {
				continue
			}
			if err := resolvePath(fmt.Sprintf("channels[%d].%s", i, f.key), f.p); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateChannels checks the channels' keys.
func (c Config) validateChannels(bad func(key, format string, a ...any)) {
	names := map[string]int{}
	for i, ch := range c.Channels {
		key := fmt.Sprintf("channels[%d]", i)
		switch ch.Kind {
		case ChannelTelegram:
			if ch.TokenFile == "" {
				bad(key+".token_file", "required: a file (mode 0600) holding the bot's token")
			}
			if ch.BotTokenFile != "" || ch.AppTokenFile != "" {
				bad(key+".bot_token_file", "is for Slack; a Telegram channel takes token_file")
			}
		case ChannelSlack:
			if ch.BotTokenFile == "" {
				bad(key+".bot_token_file", "required: a file (mode 0600) holding the bot token (xoxb-…)")
			}
			if ch.AppTokenFile == "" {
				bad(key+".app_token_file", "required: a file (mode 0600) holding the app-level token (xapp-…) for Socket Mode")
			}
			if ch.TokenFile != "" {
				bad(key+".token_file", "is for Telegram; a Slack channel takes bot_token_file and app_token_file")
			}
		default:
			bad(key+".kind", `must be "telegram" or "slack"`)
		}
		if u, err := url.Parse(ch.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(key+".api_url", "must be an http or https URL")
		}
		for j, id := range ch.Allow {
			switch ch.Kind {
			case ChannelSlack:
				if !slackUserID(id) {
					bad(fmt.Sprintf("%s.allow[%d]", key, j), "must be a Slack user id (U… or W…, letters and digits), got %q", id)
				}
			default:
				if n, err := strconv.ParseInt(id, 10, 64); err != nil || n <= 0 {
					bad(fmt.Sprintf("%s.allow[%d]", key, j), "must be a user id (a positive integer), got %q", id)
				}
			}
		}
		if ch.MaxAttachment < 0 {
			bad(key+".max_attachment", "must not be negative")
		}
		if !utf8.ValidString(ch.Name) || hasControl(ch.Name) || len(ch.Name) > 100 || !channelNameOK(ch.Name) {
			bad(key+".name", "must be 1 to 100 letters, digits, '-' or '_'")
		}
		if j, dup := names[ch.Name]; dup {
			bad(key+".name", "channels[%d] has the same name %q; give each channel its own name", j, ch.Name)
		}
		names[ch.Name] = i
	}
}

// slackUserID: Slack's user ids are U… (or W… in Enterprise Grid), upper
// case letters and digits.
func slackUserID(s string) bool {
	if len(s) < 2 || len(s) > 30 || (s[0] != 'U' && s[0] != 'W') {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// channelNameOK: a channel's name is a plain word (it appears in chat
// listings, metrics labels and the database).
func channelNameOK(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// resolvePath expands "~" in *p and makes it absolute.
func resolvePath(key string, p *string) error {
	v, err := expandHome(*p)
	if err != nil {
		return &Error{Key: key, Msg: err.Error()}
	}
	if v, err = filepath.Abs(v); err != nil {
		return &Error{Key: key, Msg: err.Error()}
	}
	*p = v
	return nil
}
