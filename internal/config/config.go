// Package config loads dispatch's YAML configuration. Every key
// is optional; defaults equal the seed's constants. A broken file, an unknown
// key or a bad value is an error that names the key. REFERENCE.md lists
// every key with its default.
package config

import (
	"os"
	"time"
)

// Config is the whole configuration. Field tags name the YAML keys.
type Config struct {
	StateDir  string    `yaml:"state_dir"`
	Health    Health    `yaml:"health"`
	Queue     Queue     `yaml:"queue"`
	Restart   Restart   `yaml:"restart"`
	Sessions  Sessions  `yaml:"sessions"`
	Agent     Agent     `yaml:"agent"`
	Outage    Outage    `yaml:"outage"`
	API       API       `yaml:"api"`
	Log       Log       `yaml:"log"`
	Events    Events    `yaml:"events"`
	Schedules Schedules `yaml:"schedules"`
	Store     Store     `yaml:"store"`
	Node      Node      `yaml:"node"`
	// Webhooks are the endpoints that receive the event feed.
	Webhooks []Webhook `yaml:"webhooks"`
	// Channels are the person's own chat apps the daemon talks to.
	Channels []Channel `yaml:"channels"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight turns.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

type Health struct {
	CheckInterval         time.Duration `yaml:"check_interval"`
	FirstCheckDelay       time.Duration `yaml:"first_check_delay"`
	CheckTimeout          time.Duration `yaml:"check_timeout"`
	IdleTimeout           time.Duration `yaml:"idle_timeout"`
	MaxErrors             int           `yaml:"max_errors"`
	StuckTimeout          time.Duration `yaml:"stuck_timeout"`
	FirstTurnStuckTimeout time.Duration `yaml:"first_turn_stuck_timeout"`
	// MaxAgentRSS is the most resident memory one live agent (its whole
	// process group) may hold; 0 means no limit.
	MaxAgentRSS Size `yaml:"max_agent_rss"`
	// MemoryInterval is how often every live agent's memory is sampled.
	MemoryInterval time.Duration `yaml:"memory_interval"`
	// MaxTurn bounds a turn's length whatever the agent prints.
	MaxTurn time.Duration `yaml:"max_turn"`
}

type Queue struct {
	// MaxAttempts is how many failed attempts make a message dead.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxBatch caps how many waiting messages go to the agent in one turn.
	MaxBatch int `yaml:"max_batch"`
	// RetainDone is how long answered messages are kept (for GET by id and
	// duplicate detection of client ids); 0 keeps them forever.
	RetainDone time.Duration `yaml:"retain_done"`
}

type Restart struct {
	MaxRestarts    int           `yaml:"max_restarts"`
	Window         time.Duration `yaml:"window"`
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
}

// Outage configures the API-health breaker: how often a held
// turn is retried as a probe while the AI API is down, and how many turns
// run at once while the backlog drains after it comes back.
type Outage struct {
	ProbeInitial        time.Duration `yaml:"probe_initial"`
	ProbeMax            time.Duration `yaml:"probe_max"`
	RecoveryConcurrency int           `yaml:"recovery_concurrency"`
}

type Sessions struct {
	Master       string `yaml:"master"`
	ExemptSuffix string `yaml:"exempt_suffix"`
	// MaxLive caps the agent processes running at once; 0 means no cap.
	MaxLive int `yaml:"max_live"`
	// Trusted are the chats whose agents may use the control socket; every
	// other agent's connection is refused. Default: the master session.
	Trusted []string `yaml:"trusted"`
	// CarryOver is how many of a chat's last exchanges the first turn of a
	// conversation that had to start over carries as earlier context.
	CarryOver int `yaml:"carry_over"`
}

// Events configures the event feed.
type Events struct {
	// Retain is how long events are kept.
	Retain time.Duration `yaml:"retain"`
}

// Schedules configures the schedules' firing.
type Schedules struct {
	// CatchUpWindow is how old a firing missed while nobody could fire it
	// may be and still be fired late, under catch-up policy "one".
	CatchUpWindow time.Duration `yaml:"catch_up_window"`
}

// Store chooses the durable store: the embedded SQLite database in
// state_dir (one node), or a PostgreSQL database that several nodes share.
type Store struct {
	Driver string `yaml:"driver"` // sqlite | postgres
	// DSN is the PostgreSQL connection string (postgres only).
	DSN string `yaml:"dsn"`
}

// Postgres reports whether the store is PostgreSQL.
// NodeID is node.id, or the host name when unset.
func (c Config) NodeID() string {
	if c.Node.ID != "" {
		return c.Node.ID
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "dispatch"
	}
	return h
}

func (s Store) Postgres() bool { return s.Driver == "postgres" }

// Node is this daemon as one node of several sharing a PostgreSQL store.
type Node struct {
	// ID names the node (default: the host name).
	ID string `yaml:"id"`
	// LeaseTTL is how long a chat's lease lasts without renewal.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// Webhook is one endpoint that receives the event feed, signed per the
// Standard Webhooks scheme.
type Webhook struct {
	// Name identifies the endpoint (default: the URL's host and path).
	Name   string   `yaml:"name"`
	URL    string   `yaml:"url"`
	Secret string   `yaml:"secret"` // whsec_<base64>
	Events []string `yaml:"events"` // default: every type
	// Timeout bounds one attempt; RetryFor how long a delivery is retried.
	Timeout  time.Duration `yaml:"timeout"`
	RetryFor time.Duration `yaml:"retry_for"`
}

type Agent struct {
	Kind    string            `yaml:"kind"`
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	// EnvPassthrough names more variables of the daemon's environment that
	// agents get, on top of the fixed allow-list; "NAME_*" matches a prefix.
	EnvPassthrough []string `yaml:"env_passthrough"`
	// Dir holds the agents' working directories, one per chat (default:
	// state_dir/work).
	Dir string `yaml:"dir"`
	// StopGrace is the wait after each of the first two stop steps.
	StopGrace time.Duration `yaml:"stop_grace"`
	// Permissions is what happens when the agent wants to run a tool that
	// needs permission: deny (it is refused), ask (a person is asked) or
	// bypass (everything runs).
	Permissions string `yaml:"permissions"`
	// AllowedTools are permission rules the agent may use without asking.
	AllowedTools []string `yaml:"allowed_tools"`
	// PermissionTimeout is how long a permission request waits for an
	// answer before the call is refused.
	PermissionTimeout time.Duration `yaml:"permission_timeout"`
	// Sandbox isolates each agent (bubblewrap).
	Sandbox Sandbox `yaml:"sandbox"`
}

// Sandbox is agent.sandbox: each agent in a bubblewrap sandbox of its own.
type Sandbox struct {
	// Mode is auto (sandboxed where the host can, a warning where not),
	// on (the daemon refuses to start without it) or off.
	Mode string `yaml:"mode"`
	// Writable are more paths every agent may write.
	Writable []string `yaml:"writable"`
}

type API struct {
	// Socket overrides the control socket path (default state_dir/dispatch.sock).
	Socket string `yaml:"socket"`
	// Listen is an optional TCP address; it requires TokenFile.
	Listen string `yaml:"listen"`
	// TokenFile holds the full-access bearer token for TCP.
	TokenFile string `yaml:"token_file"`
	// MetricsTokenFile holds an optional read-only token: /metrics,
	// /healthz and /readyz only.
	MetricsTokenFile string `yaml:"metrics_token_file"`
	// TLSCertFile and TLSKeyFile, both or neither, serve TCP over TLS.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

type Log struct {
	Level     string `yaml:"level"`       // debug | info | warn | error
	MaxSizeMB int    `yaml:"max_size_mb"` // rotate a log file past this size
	MaxFiles  int    `yaml:"max_files"`   // rotated files kept per log
}

// Default returns the configuration with every default filled in. StateDir
// is the literal "~/.local/state/dispatch": Load and Parse resolve it
// ($XDG_STATE_HOME/dispatch when that variable is set, and "~" expanded), so
// use Load, not Default, for a configuration to run with.
func Default() Config {
	return Config{
		StateDir: "~/.local/state/dispatch",
		Health: Health{
			CheckInterval:         5 * time.Minute,
			FirstCheckDelay:       30 * time.Second,
			CheckTimeout:          30 * time.Second,
			IdleTimeout:           2 * time.Hour,
			MaxErrors:             3,
			StuckTimeout:          10 * time.Minute,
			FirstTurnStuckTimeout: 30 * time.Minute,
			MaxAgentRSS:           2 * GiB,
			MemoryInterval:        10 * time.Second,
			MaxTurn:               time.Hour,
		},
		Queue:    Queue{MaxAttempts: 2, MaxBatch: 50, RetainDone: 7 * 24 * time.Hour},
		Restart:  Restart{MaxRestarts: 3, Window: 20 * time.Minute, BackoffInitial: time.Second, BackoffMax: 5 * time.Minute},
		Sessions: Sessions{Master: "master", ExemptSuffix: "-bg", MaxLive: 20, Trusted: []string{"master"}},
		Outage:   Outage{ProbeInitial: time.Second, ProbeMax: time.Minute, RecoveryConcurrency: 4},
		Agent: Agent{Kind: "claude", Command: "claude", Args: []string{}, Env: map[string]string{},
			EnvPassthrough: []string{}, StopGrace: 3 * time.Second,
			Permissions: "deny", AllowedTools: []string{}, PermissionTimeout: 30 * time.Minute,
			Sandbox: Sandbox{Mode: "auto", Writable: []string{}}},
		Log:             Log{Level: "info", MaxSizeMB: 20, MaxFiles: 5},
		Events:          Events{Retain: 7 * 24 * time.Hour},
		Schedules:       Schedules{CatchUpWindow: time.Hour},
		Store:           Store{Driver: "sqlite"},
		Node:            Node{LeaseTTL: 15 * time.Second},
		ShutdownTimeout: 15 * time.Second,
	}
}
