package postgres_test

import (
	"context"
	"testing"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/store/postgres"
	"github.com/dispatchd/dispatch/internal/store/storetest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

// The PostgreSQL store keeps the contract every store keeps, also with two
// stores (two nodes) on one database.
func TestContract(t *testing.T) {
	storetest.Run(t, storetest.Suite{
		NewDB: func(t *testing.T) func(clk clock.Clock) (store.Backend, error) {
			dsn := pgtest.NewDatabase(t)
			return func(clk clock.Clock) (store.Backend, error) {
				return postgres.OpenStore(context.Background(), dsn, clk, postgres.Options{})
			}
		},
		Shared: true,
	})
}
