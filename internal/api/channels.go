package api

import (
	"context"
	"net/http"

	"github.com/dispatchd/dispatch/internal/wire"
)

// ChannelsBackend lists the chat-app channels (GET /v1/channels); it is
// part of the feed's backend, which every channel delivers from.
type ChannelsBackend interface {
	Channels(ctx context.Context) ([]wire.ChannelStatus, error)
}

func registerChannels(mux *http.ServeMux, h *handler, b ChannelsBackend) {
	mux.HandleFunc("GET /v1/channels", func(w http.ResponseWriter, r *http.Request) {
		sts, err := b.Channels(r.Context())
		if err != nil {
			h.fail(w, "channels", err)
			return
		}
		if sts == nil {
			sts = []wire.ChannelStatus{}
		}
		writeJSON(w, http.StatusOK, wire.ChannelsOut{Channels: sts})
	})
}
