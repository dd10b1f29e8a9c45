package channel

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the channels' counters, labelled by channel, registered once
// for every channel of the daemon.
type Metrics struct {
	// Updates counts the platform's updates taken in, by outcome.
	Updates *prometheus.CounterVec // channel, outcome
	// Deliveries counts delivery attempts' results.
	Deliveries *prometheus.CounterVec // channel, result
	// Connected is 1 while the platform answers the channel's polls.
	Connected *prometheus.GaugeVec // channel
	// Conflicts counts polls the platform refused because another client
	// uses the same bot (Telegram's 409 Conflict).
	Conflicts *prometheus.CounterVec // channel
}

// Update outcomes and delivery results (label values).
const (
	UpdateAccepted    = "accepted"
	UpdateDuplicate   = "duplicate"
	UpdateRefused     = "refused"
	UpdateIgnored     = "ignored"
	UpdateUnsupported = "unsupported"
	UpdateCommand     = "command"
	UpdatePress       = "press" // a button was pressed (answered, whatever it decided)

	DeliveryDelivered   = "delivered"
	DeliveryRetried     = "retried"
	DeliveryRateLimited = "rate_limited"
	DeliveryGaveUp      = "gave_up"
)

// NewMetrics makes the channels' metrics and registers them on reg (nil:
// not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatch_channel_updates_total",
			Help: "Platform updates a channel took in, by outcome (accepted, duplicate, refused, ignored, unsupported, command).",
		}, []string{"channel", "outcome"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatch_channel_deliveries_total",
			Help: "Channel delivery attempts, by result (delivered, retried, rate_limited, gave_up).",
		}, []string{"channel", "result"}),
		Connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dispatch_channel_connected",
			Help: "1 while the platform answers the channel's polls.",
		}, []string{"channel"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatch_channel_conflicts_total",
			Help: "Polls the platform refused because another client uses the same bot (Telegram's 409 Conflict).",
		}, []string{"channel"}),
	}
	if reg != nil {
		reg.MustRegister(m.Updates, m.Deliveries, m.Connected, m.Conflicts)
	}
	return m
}

// Init makes every label of channel present at 0.
func (m *Metrics) Init(channel string) {
	if m == nil {
		return
	}
	for _, o := range []string{UpdateAccepted, UpdateDuplicate, UpdateRefused, UpdateIgnored, UpdateUnsupported, UpdateCommand, UpdatePress} {
		m.Updates.WithLabelValues(channel, o)
	}
	for _, r := range []string{DeliveryDelivered, DeliveryRetried, DeliveryRateLimited, DeliveryGaveUp} {
		m.Deliveries.WithLabelValues(channel, r)
	}
	m.Connected.WithLabelValues(channel).Set(0)
	m.Conflicts.WithLabelValues(channel)
}

// Conflict counts a poll refused because another client uses the bot.
func (m *Metrics) Conflict(channel string) {
	if m != nil {
		m.Conflicts.WithLabelValues(channel).Inc()
	}
}

// Update counts an update taken in.
func (m *Metrics) Update(channel, outcome string) {
	if m != nil {
		m.Updates.WithLabelValues(channel, outcome).Inc()
	}
}

func (m *Metrics) delivery(channel, result string) {
	if m != nil {
		m.Deliveries.WithLabelValues(channel, result).Inc()
	}
}

// SetConnected records whether the platform answers.
func (m *Metrics) SetConnected(channel string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.Connected.WithLabelValues(channel).Set(v)
}
