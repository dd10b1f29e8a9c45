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
