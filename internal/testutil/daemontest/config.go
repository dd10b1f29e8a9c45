package daemontest

import (
	"fmt"
	"maps"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options adjust the daemon's configuration.
type Options struct {
	// Set overrides config keys. A key is a dotted YAML path
	// ("health.idle_timeout", "agent.env.STUB_SPAWN_CHILD"); a value is
	// anything YAML can encode (use strings for durations: "1s").
	Set map[string]any
	// YAML is a raw YAML mapping merged over the config after Set.
	YAML string
}

// baseConfig is the config of every test daemon before overrides: short
// timers so that health checks, stuck detection, idle reaping and restarts
// happen within seconds.
func baseConfig(stateDir, stub, stubDir, argsLog string) map[string]any {
	return map[string]any{
		"state_dir": stateDir,
		"health": map[string]any{
			"check_interval":           "200ms",
			"first_check_delay":        "100ms",
			"check_timeout":            "5s",
			"stuck_timeout":            "1s",
			"first_turn_stuck_timeout": "2s",
			"idle_timeout":             "1500ms",
		},
		"restart": map[string]any{
			"backoff_initial": "50ms",
			"backoff_max":     "1s",
		},
		"outage": map[string]any{
			"probe_initial": "100ms",
			"probe_max":     "1s",
		},
		"agent": map[string]any{
			"kind":       "claude",
			"command":    stub,
			"stop_grace": "200ms",
			// The stub's flag files live in the tests' own temporary
			// folders, which a sandbox's private /tmp would hide; the
			// tests of the sandbox turn it on.
			// The stub keeps its conversations and invocation log in
			// StubDir: writable when a test turns the sandbox on.
			"sandbox": map[string]any{"mode": "off", "writable": []string{stubDir}},
			"env": map[string]any{
				"STUB_STATE_DIR": stubDir,
				"STUB_ARGS_LOG":  argsLog,
			},
		},
		"log":              map[string]any{"level": "debug"},
		"shutdown_timeout": "5s",
	}
}

// applyOptions merges opts into cfg.
func applyOptions(cfg map[string]any, opts Options) error {
	for k, v := range opts.Set {
		setPath(cfg, strings.Split(k, "."), v)
	}
	if strings.TrimSpace(opts.YAML) != "" {
		var overlay map[string]any
		if err := yaml.Unmarshal([]byte(opts.YAML), &overlay); err != nil {
			return fmt.Errorf("daemontest: Options.YAML: %w", err)
		}
		merge(cfg, overlay)
	}
	return nil
}

func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	m[path[len(path)-1]] = v
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
			cp := map[string]any{}
			maps.Copy(cp, sv)
			dst[k] = cp
			continue
		}
		dst[k] = v
	}
}

func marshalConfig(cfg map[string]any) ([]byte, error) {
	return yaml.Marshal(cfg)
}

// Set is Options that override the config keys in kv.
func Set(kv map[string]any) Options { return Options{Set: kv} }

// With returns a copy of base with kv added (kv wins).
func With(base, kv map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, kv)
	return out
}
