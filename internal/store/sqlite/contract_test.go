package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/sqlite"
	"github.com/dispatchd/dispatch/internal/store/storetest"
)

// The embedded SQLite store keeps the contract every store keeps.
func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Suite{
		NewDB: func(t *testing.T) func(clk clock.Clock) (store.Backend, error) {
			path := filepath.Join(t.TempDir(), "dispatch.db")
			return func(clk clock.Clock) (store.Backend, error) { return sqlite.Open(path, clk) }
		},
	})
}
