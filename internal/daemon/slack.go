package daemon

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/channel"
	"github.com/dispatchd/dispatch/internal/channel/slack"
	"github.com/dispatchd/dispatch/internal/channel/telegram"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
)

// openSlack makes channels[i], a Slack channel (not started). Its two
// token files are checked like the API's. until is its role's deadline
// (nil on a single node): past it the channel neither takes envelopes in
// nor sends. folders gives each chat's working directory, for files in
// and out.
func openSlack(i int, c config.Channel, st store.Backend, sup *supervisor.Supervisor, m *channel.Metrics, log *slog.Logger, until func() time.Time, folders channel.Folders) (chatChannel, error) {
	bot, err := api.LoadToken(fmt.Sprintf("channels[%d].bot_token_file", i), c.BotTokenFile)
	if err != nil {
		return nil, err
	}
	app, err := api.LoadToken(fmt.Sprintf("channels[%d].app_token_file", i), c.AppTokenFile)
	if err != nil {
		return nil, err
	}
	ch, err := slack.New(slack.Config{
		Name: c.Name, BotToken: bot, AppToken: app, APIURL: c.APIURL, Allow: c.Allow, Store: st,
		Accepted: sup.Accepted, Control: chatControl{sup}, Permissions: sup.Permissions(), Metrics: m, Log: log.With("component", "channel"),
		Until: until, Folders: folders, MaxAttachment: int64(c.MaxAttachment),
	})
	if err != nil {
		return nil, fmt.Errorf("channels[%d]: %w", i, err)
	}
	return slackChannel{ch}, nil
}

// slackChannel shows a Slack channel's state as the channels' listing
// does.
type slackChannel struct{ *slack.Channel }

func (s slackChannel) Status() telegram.Status {
	st := s.Channel.Status()
	return telegram.Status{Name: st.Name, Kind: config.ChannelSlack, Connected: st.Connected, LastPoll: st.Since,
		LastUpdate: st.LastUpdate, Error: st.Error, Bot: st.Bot}
}
