package wire

// Schedule is one schedule as the HTTP API and the CLI show it
// (GET /v1/schedules, POST /v1/schedules, GET /v1/schedules/{id}).
type Schedule struct {
	ID     string `json:"id"`
	ChatID string `json:"chat_id"`
	// Kind is "cron", "every" or "at"; Expr its expression as given
	// ("0 8 * * 1-5", "30m", "2026-12-24T17:00"); TZ the IANA zone
	// ("" is UTC).
	Kind string `json:"kind"`
	Expr string `json:"expr"`
	TZ   string `json:"tz,omitempty"`
	Text string `json:"text"`
	// CatchUp is the policy for firings missed while nobody could fire
	// them: "one", "none" or "all".
	CatchUp string `json:"catch_up"`
	Paused  bool   `json:"paused"`
	// CreatedAt, Next (the next firing; "" when paused or finished) and
	// LastFired (the last firing accepted; "" none yet) are RFC 3339, UTC.
	CreatedAt string `json:"created_at"`
	Next      string `json:"next,omitempty"`
	LastFired string `json:"last_fired,omitempty"`
	// Finished: a one-off schedule that has fired (or was reported
	// missed); it is kept for the record until removed.
	Finished bool `json:"finished,omitempty"`
}

// ScheduleIn is the body of POST /v1/schedules: exactly one of Cron,
// Every and At.
type ScheduleIn struct {
	ChatID string `json:"chat_id"`
	Text   string `json:"text"`
	Cron   string `json:"cron,omitempty"`
	Every  string `json:"every,omitempty"` // Go duration syntax: "30m"
	At     string `json:"at,omitempty"`
	TZ     string `json:"tz,omitempty"`
	// CatchUp: "one" (default), "none" or "all".
	CatchUp string `json:"catch_up,omitempty"`
}

// SchedulesOut is the answer of GET /v1/schedules.
type SchedulesOut struct {
	Schedules []Schedule `json:"schedules"`
}
