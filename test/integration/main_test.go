// Package integration runs the real dispatch binary against the stub
// Claude CLI: every test starts its own daemon (internal/testutil/daemontest)
// with short timers and drives it through the CLI and the HTTP API.
package integration

import (
	"testing"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// Shorthands for config overrides.
var (
	opts = daemontest.Set
	with = daemontest.With
)

// noChecks turns the health check and idle reaping off (for tests that
// must not see them): first check and interval an hour away.
var noChecks = map[string]any{
	"health.first_check_delay": "1h",
	"health.check_interval":    "1h",
	"health.idle_timeout":      "1h",
}
