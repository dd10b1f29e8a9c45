// Package integration runs the real dispatch binary against the stub
// Claude CLI: every test starts its own daemon (internal/testutil/daemontest)
// with short timers and drives it through the CLI and the HTTP API.
package integration

import (
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// opts is a shorthand for daemontest.Options{Set: kv}.
func opts(kv map[string]any) daemontest.Options { return daemontest.Options{Set: kv} }

// noChecks turns the health check and idle reaping off (for tests that
// must not see them): first check and interval an hour away.
var noChecks = map[string]any{
	"health.first_check_delay": "1h",
	"health.check_interval":    "1h",
	"health.idle_timeout":      "1h",
}

// with returns a copy of base with kv added.
func with(base map[string]any, kv map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range kv {
		out[k] = v
	}
	return out
}
