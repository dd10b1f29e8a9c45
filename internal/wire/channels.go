package wire

// ChannelStatus is one chat-app channel's state (GET /v1/channels).
type ChannelStatus struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // telegram
	Bot  string `json:"bot,omitempty"`
	// Connected: the platform answered the last poll.
	Connected bool `json:"connected"`
	// LastUpdate is when the last update came in (RFC 3339; "" none yet).
	LastUpdate string `json:"last_update,omitempty"`
	// Error is the last polling error, while not connected.
	Error string `json:"error,omitempty"`
	// Conflict: Telegram said another poller is using the bot (409
	// Conflict); the channel backs off and tries again.
	Conflict bool `json:"conflict,omitempty"`
	// Node is the cluster node that holds the channel and runs it (""
	// when none does, and on a single node). Remote: another node holds
	// it, so connected, last_update and error are not known here; the
	// deliveries' figures come from the shared database.
	Node   string `json:"node"`
	Remote bool   `json:"remote,omitempty"`
	// Backlog counts the replies and notices not yet delivered; Failed
	// those given up; Delivered those delivered and still kept.
	Backlog   int `json:"backlog"`
	Failed    int `json:"failed"`
	Delivered int `json:"delivered"`
	// RateLimitedUntil is the latest time a waiting delivery is held to
	// (a rate limit or a retry; RFC 3339, "" none).
	RateLimitedUntil string `json:"rate_limited_until,omitempty"`
}

// ChannelsOut is the answer of GET /v1/channels.
type ChannelsOut struct {
	Channels []ChannelStatus `json:"channels"`
}
