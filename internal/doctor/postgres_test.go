package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

func TestCheckStorePostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	cfg := config.Default()
	cfg.Store = config.Store{Driver: "postgres", DSN: dsn}
	r := CheckStore(context.Background(), cfg, Env{})
	if r.Status != Pass || !strings.Contains(r.Detail, "no schema yet") {
		t.Fatalf("fresh database: %+v", r)
	}
	cfg.Store.DSN = "postgres://postgres:secretpw@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	r = CheckStore(context.Background(), cfg, Env{})
	if r.Status != Fail || strings.Contains(r.Detail, "secretpw") {
		t.Fatalf("unreachable server: %+v", r)
	}
}
