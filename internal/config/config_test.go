package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// isolate points $HOME at a temporary directory and clears $XDG_STATE_HOME.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_STATE_HOME", "")
	return home
}

// nest turns "a.b" and a value into the YAML "a:\n  b: value\n".
func nest(key, value string) string {
	parts := strings.Split(key, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i))
		b.WriteString(p)
		b.WriteString(":")
		if i == len(parts)-1 {
			b.WriteString(" " + value)
		}
		b.WriteString("\n")
	}
	return b.String()
}

type leaf struct {
	key string
	typ reflect.Type
}

// leaves lists every configuration key that holds a value, in struct order.
func leaves(t reflect.Type, prefix string) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		key := join(prefix, name)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leaves(f.Type, key)...)
			continue
		}
		out = append(out, leaf{key, f.Type})
	}
	return out
}

// field returns the value at a key path.
func field(c Config, key string) reflect.Value {
	v := reflect.ValueOf(c)
	for _, p := range strings.Split(key, ".") {
		v = v.Field(structFields(v.Type())[p])
	}
	return v
}

func TestLoadNoFileGivesDefaults(t *testing.T) {
	home := isolate(t)
	got, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.StateDir = filepath.Join(home, ".local/state/dispatch")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load(\"\") =\n%+v\nwant\n%+v", got, want)
	}
	if !filepath.IsAbs(got.StateDir) {
		t.Fatalf("state_dir %q is not absolute", got.StateDir)
	}
	if got.Agent.Args == nil || got.Agent.Env == nil {
		t.Fatal("agent.args and agent.env must be non-nil")
	}
}

func TestDefaults(t *testing.T) {
	home := isolate(t)
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want any
	}{
		{"state_dir", filepath.Join(home, ".local/state/dispatch")},
		{"health.check_interval", 5 * time.Minute},
		{"health.first_check_delay", 30 * time.Second},
		{"health.check_timeout", 30 * time.Second},
		{"health.idle_timeout", 2 * time.Hour},
		{"health.max_errors", 3},
		{"health.stuck_timeout", 10 * time.Minute},
		{"health.first_turn_stuck_timeout", 30 * time.Minute},
		{"health.max_agent_rss", 2 * GiB},
		{"health.memory_interval", 10 * time.Second},
		{"health.max_turn", time.Hour},
		{"queue.max_attempts", 2},
		{"queue.max_batch", 50},
		{"queue.retain_done", 7 * 24 * time.Hour},
		{"restart.max_restarts", 3},
		{"restart.window", 20 * time.Minute},
		{"restart.backoff_initial", time.Second},
		{"restart.backoff_max", 5 * time.Minute},
		{"sessions.master", "master"},
		{"sessions.exempt_suffix", "-bg"},
		{"sessions.max_live", 20},
		{"sessions.trusted", []string{"master"}},
		{"agent.env_passthrough", []string{}},
		{"api.metrics_token_file", ""},
		{"api.tls_cert_file", ""},
		{"api.tls_key_file", ""},
		{"agent.kind", "claude"},
		{"agent.command", "claude"},
		{"agent.args", []string{}},
		{"agent.env", map[string]string{}},
		{"agent.dir", ""},
		{"agent.stop_grace", 3 * time.Second},
		{"agent.sandbox.mode", "auto"},
		{"agent.sandbox.writable", []string{}},
		{"agent.permissions", "deny"},
		{"agent.allowed_tools", []string{}},
		{"agent.permission_timeout", 30 * time.Minute},
		{"api.socket", ""},
		{"api.listen", ""},
		{"api.token_file", ""},
		{"log.level", "info"},
		{"log.max_size_mb", 20},
		{"log.max_files", 5},
		{"outage.probe_initial", time.Second},
		{"outage.probe_max", time.Minute},
		{"outage.recovery_concurrency", 4},
		{"shutdown_timeout", 15 * time.Second},
		{"sessions.carry_over", 0},
		{"events.retain", 7 * 24 * time.Hour},
		{"schedules.catch_up_window", time.Hour},
		{"store.driver", "sqlite"},
		{"store.dsn", ""},
		{"node.id", ""},
		{"node.lease_ttl", 15 * time.Second},
		{"webhooks", []Webhook(nil)},
		{"channels", []Channel(nil)},
	}
	if n := len(leaves(reflect.TypeFor[Config](), "")); n != len(tests) {
		t.Errorf("table covers %d keys, Config has %d", len(tests), n)
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := field(cfg, tt.key).Interface(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.key, got, tt.want)
			}
		})
	}
	for name, got := range map[string]string{
		"SocketPath": cfg.SocketPath(), "DBPath": cfg.DBPath(),
		"LockPath": cfg.LockPath(), "WorkDir": cfg.WorkDir(),
	} {
		want := map[string]string{
			"SocketPath": "dispatch.sock", "DBPath": "dispatch.db",
			"LockPath": "dispatch.lock", "WorkDir": "work",
		}[name]
		if got != filepath.Join(cfg.StateDir, want) {
			t.Errorf("%s = %q, want state_dir/%s", name, got, want)
		}
	}
}

func TestSpecExampleIsTheDefaults(t *testing.T) {
	isolate(t)
	spec, err := Load("testdata/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec, def) {
		t.Fatalf("documented example (testdata/spec.yaml) =\n%+v\ndefaults =\n%+v", spec, def)
	}
}

func TestFullFileRoundTrip(t *testing.T) {
	home := isolate(t)
	got, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		StateDir: filepath.Join(home, "dispatch-state"),
		Health: Health{
			CheckInterval:         2 * time.Minute,
			FirstCheckDelay:       10 * time.Second,
			CheckTimeout:          20 * time.Second,
			IdleTimeout:           90 * time.Minute,
			MaxErrors:             4,
			StuckTimeout:          15 * time.Minute,
			FirstTurnStuckTimeout: 45 * time.Minute,
			MaxAgentRSS:           512 * MiB,
			MemoryInterval:        3 * time.Second,
			MaxTurn:               2 * time.Hour,
		},
		Queue:     Queue{MaxAttempts: 3, MaxBatch: 20, RetainDone: 72 * time.Hour},
		Restart:   Restart{MaxRestarts: 5, Window: 30 * time.Minute, BackoffInitial: 500 * time.Millisecond, BackoffMax: 2 * time.Minute},
		Sessions:  Sessions{Master: "boss", ExemptSuffix: "-background", MaxLive: 7, CarryOver: 3, Trusted: []string{"boss", "ops-bg"}},
		Events:    Events{Retain: 48 * time.Hour},
		Schedules: Schedules{CatchUpWindow: 3 * time.Hour},
		Store:     Store{Driver: "postgres", DSN: "postgres://dispatch@db.example/dispatch"},
		Node:      Node{ID: "node-a", LeaseTTL: 20 * time.Second},
		Webhooks: []Webhook{{
			Name: "bridge", URL: "https://bridge.example/dispatch", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			Events: []string{"reply", "dead_letter"}, Timeout: 5 * time.Second, RetryFor: 12 * time.Hour,
		}},
		Channels: []Channel{{
			Kind: "telegram", Name: "tg-home", TokenFile: filepath.Join(home, ".config/dispatch/telegram.token"),
			APIURL: "http://127.0.0.1:8081", Allow: []string{"123456789", "42"}, MaxAttachment: 5 * MiB,
		}},
		Agent: Agent{
			Kind:    "echo",
			Command: filepath.Join(home, "bin/claude"),
			Args:    []string{"--model", "sonnet"},
			Env: map[string]string{
				"ANTHROPIC_BASE_URL":      "http://127.0.0.1:8080",
				"CLAUDE_CODE_MAX_RETRIES": "2",
			},
			EnvPassthrough:    []string{"ANTHROPIC_API_KEY", "OTEL_*"},
			Dir:               filepath.Join(home, "agent-work"),
			StopGrace:         5 * time.Second,
			Permissions:       "ask",
			AllowedTools:      []string{"Read", "Bash(git status:*)"},
			PermissionTimeout: 10 * time.Minute,
			Sandbox:           Sandbox{Mode: "on", Writable: []string{filepath.Join(home, "src"), "/srv/shared"}},
		},
		API: API{
			Socket:           "/tmp/dispatch-full-test.sock",
			Listen:           "127.0.0.1:8787",
			TokenFile:        filepath.Join(home, ".config/dispatch/token"),
			MetricsTokenFile: filepath.Join(home, ".config/dispatch/metrics-token"),
			TLSCertFile:      filepath.Join(home, ".config/dispatch/cert.pem"),
			TLSKeyFile:       filepath.Join(home, ".config/dispatch/key.pem"),
		},
		Log:             Log{Level: "debug", MaxSizeMB: 50, MaxFiles: 9},
		Outage:          Outage{ProbeInitial: 2 * time.Second, ProbeMax: 30 * time.Second, RecoveryConcurrency: 2},
		ShutdownTimeout: 40 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("full.yaml =\n%+v\nwant\n%+v", got, want)
	}
	// The file must exercise every key: each value differs from its default.
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves(reflect.TypeFor[Config](), "") {
		if reflect.DeepEqual(field(got, l.key).Interface(), field(def, l.key).Interface()) {
			t.Errorf("full.yaml leaves %s at its default", l.key)
		}
	}
	if got.SocketPath() != "/tmp/dispatch-full-test.sock" {
		t.Errorf("SocketPath = %q", got.SocketPath())
	}
	if got.WorkDir() != filepath.Join(home, "agent-work") {
		t.Errorf("WorkDir = %q", got.WorkDir())
	}
	if got.DBPath() != filepath.Join(home, "dispatch-state/dispatch.db") {
		t.Errorf("DBPath = %q", got.DBPath())
	}
	if got.LockPath() != filepath.Join(home, "dispatch-state/dispatch.lock") {
		t.Errorf("LockPath = %q", got.LockPath())
	}
}

// The trusted chats default to the master session, whatever it is called;
// an explicit empty list trusts no agent.
func TestTrustedDefaultsToMaster(t *testing.T) {
	isolate(t)
	for _, tt := range []struct {
		yaml string
		want []string
	}{
		{"", []string{"master"}},
		{"sessions:\n  master: boss\n", []string{"boss"}},
		{"sessions:\n  master: boss\n  trusted: []\n", []string{}},
		{"sessions:\n  trusted: [ops-bg]\n", []string{"ops-bg"}},
	} {
		cfg, err := Parse([]byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Sessions.Trusted, tt.want) {
			t.Errorf("%q: trusted = %#v, want %#v", tt.yaml, cfg.Sessions.Trusted, tt.want)
		}
	}
}

func TestXDGStateHome(t *testing.T) {
	home := isolate(t)
	xdg := t.TempDir()
	tests := []struct {
		name, xdg, yaml, want string
	}{
		{"xdg set", xdg, "", filepath.Join(xdg, "dispatch")},
		{"xdg set, state_dir null", xdg, "state_dir: null\n", filepath.Join(xdg, "dispatch")},
		{"xdg unset", "", "", filepath.Join(home, ".local/state/dispatch")},
		{"xdg relative is ignored", "rel/state", "", filepath.Join(home, ".local/state/dispatch")},
		{"explicit state_dir wins", xdg, "state_dir: /srv/d\n", "/srv/d"},
		{"explicit default-looking state_dir wins", xdg, "state_dir: ~/.local/state/dispatch\n", filepath.Join(home, ".local/state/dispatch")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			cfg, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.StateDir != tt.want {
				t.Errorf("state_dir = %q, want %q", cfg.StateDir, tt.want)
			}
		})
	}
}

func TestTildeExpansion(t *testing.T) {
	home := isolate(t)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, value, want string
	}{
		{"state_dir", `"~"`, home}, // a bare ~ is YAML null: the default
		{"state_dir", "~/s", filepath.Join(home, "s")},
		{"state_dir", "/abs/s", "/abs/s"},
		{"state_dir", "rel/s", filepath.Join(cwd, "rel/s")},
		{"state_dir", "~bob/s", filepath.Join(cwd, "~bob/s")},
		{"agent.dir", "~/work", filepath.Join(home, "work")},
		{"api.socket", "~/d.sock", filepath.Join(home, "d.sock")},
		{"api.token_file", "~/token", filepath.Join(home, "token")},
		{"agent.command", "~/bin/claude", filepath.Join(home, "bin/claude")},
		{"agent.command", "claude", "claude"},
		{"agent.command", "./claude", "./claude"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			cfg, err := Parse([]byte(nest(tt.key, tt.value)))
			if err != nil {
				t.Fatal(err)
			}
			if got := field(cfg, tt.key).String(); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
	t.Run("no home", func(t *testing.T) {
		t.Setenv("HOME", "")
		_, err := Parse([]byte("agent:\n  dir: ~/w\nstate_dir: /s\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "config: agent.dir: cannot expand ~") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestPathsAndDerivedPaths(t *testing.T) {
	isolate(t)
	cfg, err := Parse([]byte("state_dir: /srv/dispatch\n"))
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		cfg.SocketPath(): "/srv/dispatch/dispatch.sock",
		cfg.DBPath():     "/srv/dispatch/dispatch.db",
		cfg.LockPath():   "/srv/dispatch/dispatch.lock",
		cfg.WorkDir():    "/srv/dispatch/work",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestExactMessages pins the error texts the brief and README quote.
func TestExactMessages(t *testing.T) {
	isolate(t)
	tests := []struct{ yaml, want string }{
		{"health:\n  idle_timeout: 2x\n", `config: health.idle_timeout: invalid duration "2x"`},
		{"health:\n  check_interval: 5m\n  idel_timeout: 1h\n", `config: unknown key health.idel_timeout (line 3)`},
		{"queue:\n  max_attempts: 0\n", `config: queue.max_attempts: must be at least 1`},
		{"agent:\n  kind: bash\n", `config: agent.kind: must be "claude" or "echo"`},
		{"bogus: 1\n", `config: unknown key bogus (line 1)`},
		{"queue:\n  max_attempts: 3\n", `config: queue.max_attempts: must be below restart.max_restarts (3), got 3`},
		{"api:\n  listen: 127.0.0.1:8080\n", `config: api.token_file: required when api.listen is set`},
		{"health:\n  max_errors: three\n", `config: health.max_errors: expected an integer, got the string "three" (line 2)`},
		{"health:\n  idle_timeout: 5\n", `config: health.idle_timeout: invalid duration "5" (a duration needs a unit, e.g. "5s")`},
		{"health: [1]\n", `config: health: expected a mapping, got a list (line 1)`},
		{"- a\n- b\n", `config: top level: expected a mapping, got a list (line 1)`},
		{"log:\n  level: loud\n", `config: log.level: must be "debug", "info", "warn" or "error"`},
		{"health:\n  idle_timeout: 1h\n  idle_timeout: 2h\n", `config: health.idle_timeout: duplicate key (line 3)`},
		{"a: 1\n---\nb: 2\n", `config: more than one YAML document in the input (line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant  %s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *config.Error", err)
			}
		})
	}
}

// TestEveryKeyNamedInErrors checks, for every key, that a value of the wrong
// type and (for durations) a bad duration produce an error naming the key.
func TestEveryKeyNamedInErrors(t *testing.T) {
	isolate(t)
	for _, l := range leaves(reflect.TypeFor[Config](), "") {
		wrong := "[1, 2]"
		if l.typ.Kind() == reflect.Slice {
			wrong = "{x: 1}"
		}
		cases := map[string]string{"wrong type": wrong}
		if l.typ == durationType {
			cases["bad duration"] = `"2x"`
			cases["float"] = "1.5"
		}
		if l.typ == sizeType {
			cases["bad size"] = `"2 furlongs"`
			cases["negative"] = "-1GiB"
		}
		if l.typ == sizeType {
			cases["bad size"] = `"2 furlongs"`
			cases["negative"] = "-1GiB"
		}
		if l.typ.Kind() == reflect.Int {
			cases["string"] = "abc"
			cases["float"] = "1.5"
			cases["overflow"] = "99999999999999999999999"
		}
		for name, value := range cases {
			t.Run(l.key+"/"+name, func(t *testing.T) {
				_, err := Parse([]byte(nest(l.key, value)))
				if err == nil {
					t.Fatalf("%s: %s accepted", l.key, value)
				}
				if !strings.HasPrefix(err.Error(), "config: "+l.key+": ") {
					t.Fatalf("error %q does not name %s", err, l.key)
				}
			})
		}
		t.Run(l.key+"/unknown child", func(t *testing.T) {
			section, _, ok := strings.Cut(l.key, ".")
			if !ok {
				section = ""
			}
			key := join(section, "no_such_key")
			_, err := Parse([]byte(nest(key, "1")))
			want := fmt.Sprintf("config: unknown key %s (line %d)", key, strings.Count(key, ".")+1)
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %s", err, want)
			}
		})
	}
	t.Run("env value", func(t *testing.T) {
		_, err := Parse([]byte("agent:\n  env:\n    FOO: [1]\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "config: agent.env.FOO: expected a string") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("args element", func(t *testing.T) {
		_, err := Parse([]byte("agent:\n  args: [a, {b: 1}]\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "config: agent.args[1]: expected a string") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestValidation(t *testing.T) {
	isolate(t)
	tests := []struct{ yaml, key string }{
		{"state_dir: ''\n", "state_dir"},
		{"health:\n  check_interval: 0\n", "health.check_interval"},
		{"health:\n  check_interval: -1s\n", "health.check_interval"},
		{"health:\n  first_check_delay: -1s\n", "health.first_check_delay"},
		{"health:\n  check_timeout: 0s\n", "health.check_timeout"},
		{"health:\n  idle_timeout: 0\n", "health.idle_timeout"},
		{"health:\n  max_errors: 0\n", "health.max_errors"},
		{"health:\n  stuck_timeout: 0\n", "health.stuck_timeout"},
		{"health:\n  first_turn_stuck_timeout: 0\n", "health.first_turn_stuck_timeout"},
		{"health:\n  max_agent_rss: 1MiB\n", "health.max_agent_rss"},
		{"health:\n  memory_interval: 0\n", "health.memory_interval"},
		{"sessions:\n  max_live: -1\n", "sessions.max_live"},
		{"health:\n  max_turn: 0\n", "health.max_turn"},
		{"health:\n  max_turn: -1s\n", "health.max_turn"},
		{"queue:\n  max_attempts: 0\n", "queue.max_attempts"},
		{"queue:\n  max_attempts: 4\n", "queue.max_attempts"},
		{"queue:\n  max_batch: 0\n", "queue.max_batch"},
		{"restart:\n  max_restarts: 0\n", "restart.max_restarts"},
		{"restart:\n  window: 0\n", "restart.window"},
		{"restart:\n  backoff_initial: 0\n", "restart.backoff_initial"},
		{"restart:\n  backoff_max: 0\n", "restart.backoff_max"},
		{"restart:\n  backoff_initial: 10m\n", "restart.backoff_max"},
		{"sessions:\n  master: ''\n", "sessions.master"},
		{"sessions:\n  master: \"a\\tb\"\n", "sessions.master"},
		{"sessions:\n  exempt_suffix: ''\n", "sessions.exempt_suffix"},
		{"agent:\n  kind: python\n", "agent.kind"},
		{"agent:\n  command: ''\n", "agent.command"},
		{"agent:\n  env: {\"A=B\": x}\n", "agent.env"},
		{"agent:\n  args: [\"a\\0b\"]\n", "agent.args[0]"},
		{"agent:\n  stop_grace: 0\n", "agent.stop_grace"},
		{"agent:\n  sandbox:\n    mode: maybe\n", "agent.sandbox.mode"},
		{"agent:\n  sandbox:\n    writable: [relative/dir]\n", "agent.sandbox.writable[0]"},
		{"agent:\n  permissions: yes\n", "agent.permissions"},
		{"agent:\n  permission_timeout: 0s\n", "agent.permission_timeout"},
		{"agent:\n  allowed_tools: [\"\"]\n", "agent.allowed_tools[0]"},
		{"api:\n  listen: nonsense\n  token_file: /t\n", "api.listen"},
		{"api:\n  listen: :8080\n", "api.token_file"},
		{"api:\n  metrics_token_file: /m\n", "api.metrics_token_file"},
		{"api:\n  listen: :8080\n  token_file: /t\n  metrics_token_file: /t\n", "api.metrics_token_file"},
		{"api:\n  listen: :8080\n  token_file: /t\n  tls_cert_file: /c\n", "api.tls_key_file"},
		{"api:\n  tls_cert_file: /c\n  tls_key_file: /k\n", "api.tls_cert_file"},
		{"sessions:\n  trusted: [\"\"]\n", "sessions.trusted[0]"},
		// The API's chat id rule, exactly: no unusual spaces, no padding.
		{"sessions:\n  master: \"a\\u00a0b\"\n", "sessions.master"},
		{"sessions:\n  master: \" master\"\n", "sessions.master"},
		{"sessions:\n  trusted: [\"ok\", \"bad \"]\n", "sessions.trusted[1]"},
		{"agent:\n  env_passthrough: [\"A=B\"]\n", "agent.env_passthrough[0]"},
		{"agent:\n  env_passthrough: [\"*\"]\n", "agent.env_passthrough[0]"},
		{"api:\n  socket: /" + strings.Repeat("s", 200) + "\n", "api.socket"},
		{"state_dir: /" + strings.Repeat("s", 200) + "\n", "state_dir"},
		{"log:\n  level: verbose\n", "log.level"},
		{"log:\n  max_size_mb: 0\n", "log.max_size_mb"},
		{"log:\n  max_files: 0\n", "log.max_files"},
		{"shutdown_timeout: 0\n", "shutdown_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"/"+tt.yaml, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "config: "+tt.key+": ") {
				t.Fatalf("error %q does not name %s", err, tt.key)
			}
		})
	}
}

func TestValidValues(t *testing.T) {
	isolate(t)
	tests := []string{
		"",
		"\n# only a comment\n",
		"~\n",
		"---\n",
		"health:\n",
		"health: ~\nqueue: null\n",
		"health:\n  first_check_delay: 0\n",
		"health:\n  first_check_delay: \"0\"\n",
		"queue:\n  max_attempts: 2\n",
		"agent:\n  kind: echo\n  command: ''\n",
		"agent:\n  args: []\n  env: {}\n",
		"agent:\n  env: {EMPTY: ~, NUM: 1, BOOL: true}\n",
		"api:\n  listen: :8080\n  token_file: /t\n",
		"restart:\n  backoff_initial: 1m\n  backoff_max: 1m\n",
		"health:\n  idle_timeout: 1h30m\n  max_errors: 0x10\n",
		"queue:\n  max_batch: 1_000\n",
	}
	for _, y := range tests {
		if _, err := Parse([]byte(y)); err != nil {
			t.Errorf("Parse(%q): %v", y, err)
		}
	}
	cfg, err := Parse([]byte("agent:\n  env: {EMPTY: ~, NUM: 1, BOOL: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"EMPTY": "", "NUM": "1", "BOOL": "true"}; !reflect.DeepEqual(cfg.Agent.Env, want) {
		t.Errorf("env = %v, want %v", cfg.Agent.Env, want)
	}
	cfg, err = Parse([]byte("health: ~\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Health != Default().Health {
		t.Errorf("null section changed defaults: %+v", cfg.Health)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	isolate(t)
	y := `
timeouts: &t
  stuck_timeout: 20m
  idle_timeout: 3h
`
	if _, err := Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), "unknown key timeouts") {
		t.Fatalf("err = %v", err)
	}
	y = `
health: &h
  stuck_timeout: 20m
  idle_timeout: 3h
agent:
  env: &e {A: "1", B: "2"}
  args: [*x, y]
sessions:
  master: &x boss
`
	if _, err := Parse([]byte(y)); err == nil {
		t.Fatal("alias before anchor accepted")
	}
	y = `
health: &h
  stuck_timeout: 20m
  idle_timeout: 3h
sessions:
  master: &m boss
agent:
  env:
    <<: {A: "1", B: "2"}
    B: "3"
  args: [*m, y]
`
	cfg, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Health.StuckTimeout != 20*time.Minute || cfg.Health.IdleTimeout != 3*time.Hour {
		t.Errorf("health = %+v", cfg.Health)
	}
	if want := map[string]string{"A": "1", "B": "3"}; !reflect.DeepEqual(cfg.Agent.Env, want) {
		t.Errorf("env = %v, want %v", cfg.Agent.Env, want)
	}
	if want := []string{"boss", "y"}; !reflect.DeepEqual(cfg.Agent.Args, want) {
		t.Errorf("args = %v, want %v", cfg.Agent.Args, want)
	}
}

func TestLoadErrors(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("missing file: %v", err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("health:\n  idle_timeout: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(broken); err == nil || !strings.HasPrefix(err.Error(), "config: "+broken+": yaml: ") {
		t.Errorf("broken file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("health:\n  idel_timeout: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || err.Error() != "config: unknown key health.idel_timeout (line 2)" {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := Load(dir); err == nil {
		t.Error("directory accepted")
	}
}

func TestHostileInputs(t *testing.T) {
	isolate(t)
	inputs := map[string]string{
		"binary":       "\x00\xff\xfe\x01garbage\x80",
		"top scalar":   "hello",
		"top int":      "42",
		"deep nesting": strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
		"deep maps":    strings.Repeat("a: {", 5000) + strings.Repeat("}", 5000),
		"deep health":  "health: " + strings.Repeat("{a: ", 3000) + "1" + strings.Repeat("}", 3000),
		"merge bomb":   mergeBomb(),
		"alias key":    "&k health: 1\n*k : 2\n",
		"complex key":  "? [a, b]\n: 1\n",
		"tagged":       "health: !!binary aGVsbG8=\n",
		"custom tag":   "queue:\n  max_attempts: !foo 2\n",
		"tabs":         "health:\n\tidle_timeout: 1h\n",
		"huge":         strings.Repeat("#", maxInputBytes+1),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); err == nil {
				t.Errorf("accepted %q", truncate(in))
			}
		})
	}
}

// mergeBomb builds merge keys, inside a key dispatch knows, that would
// expand exponentially if followed naively.
func mergeBomb() string {
	var b strings.Builder
	b.WriteString("agent:\n  env:\n    <<:\n      - &a0 {k: v}\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "      - &a%d {<<: [*a%d, *a%d, *a%d, *a%d]}\n", i, i-1, i-1, i-1, i-1)
	}
	return b.String()
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

func TestMergeBombIsBounded(t *testing.T) {
	isolate(t)
	done := make(chan error, 1)
	go func() {
		_, err := Parse([]byte(mergeBomb()))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "too complex") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("merge bomb not bounded")
	}
}

func TestReferenceListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves(reflect.TypeFor[Config](), "") {
		if !strings.Contains(string(data), "| `"+l.key+"` |") {
			t.Errorf("REFERENCE.md has no row for %s", l.key)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/full.yaml", "testdata/spec.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "- a", "health:\n  idle_timeout: 2x\n", "a: &a {<<: *a}",
		"agent:\n  env: {<<: [{a: b}]}\n", "\x00\xff", "health: {max_errors: 0x10}",
		"queue: {max_attempts: 3}\nrestart: {max_restarts: 4}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		cfg, err := Parse(data)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v on %d bytes", d, len(data))
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error without prefix: %q", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		if !filepath.IsAbs(cfg.StateDir) {
			t.Fatalf("state_dir %q not absolute", cfg.StateDir)
		}
		if cfg.Agent.Args == nil || cfg.Agent.Env == nil {
			t.Fatal("nil args or env")
		}
	})
}

func TestWebhookKeys(t *testing.T) {
	isolate(t)
	cfg, err := Parse([]byte("webhooks:\n  - url: http://127.0.0.1:9/hook\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Webhooks[0]; w.Timeout != 10*time.Second || w.RetryFor != 24*time.Hour || w.Events != nil {
		t.Fatalf("defaults: %+v", w)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"webhooks:\n  - url: ftp://x/y\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "webhooks[0].url"},
		{"webhooks:\n  - url: https://x/y\n    secret: notasecretvalue\n", "webhooks[0].secret"},
		{"webhooks:\n  - url: https://x/y\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    events: [replies]\n", "webhooks[0].events"},
		{"webhooks:\n  - url: https://x/y\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    bogus: 1\n", "webhooks[0].bogus"},
		{"webhooks:\n  - url: https://x/y\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n  - url: https://x/y?a=1\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "webhooks[1].name"},
		{"webhooks: {url: x}\n", "webhooks"},
		{"sessions:\n  carry_over: -1\n", "sessions.carry_over"},
		{"events:\n  retain: 0s\n", "events.retain"},
		{"schedules:\n  catch_up_window: 30s\n", "schedules.catch_up_window"},
		{"store:\n  driver: mysql\n", "store.driver"},
		{"store:\n  driver: postgres\n", "store.dsn"},
		{"store:\n  dsn: postgres://db/x\n", "store.dsn"},
		{"store:\n  driver: postgres\n  dsn: notasecretvalue\n", "store.dsn"},
		{"node:\n  lease_ttl: 1s\n", "node.lease_ttl"},
		{"node:\n  id: \"a b\"\n", "node.id"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: err = %v, want one naming %s", tc.yaml, err, tc.key)
		}
		if err != nil && strings.Contains(err.Error(), "notasecretvalue") {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
}
