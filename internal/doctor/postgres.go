package doctor

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dispatchd/dispatch/internal/config"
)

// checkPostgres is the store check for store.driver: postgres. It only
// reads: the server answers, takes writes (not a standby), is recent
// enough, and holds a schema this build knows (or none yet: the first
// node to start creates it).
func checkPostgres(ctx context.Context, cfg config.Config, env Env) Result {
	r := Result{Name: "store"}
	qctx, cancel := context.WithTimeout(ctx, env.StoreTimeout)
	defer cancel()
	fail := func(detail, hint string) Result {
		r.Status, r.Detail, r.Hint = Fail, detail, hint
		return r
	}
	conn, err := pgx.Connect(qctx, cfg.Store.DSN)
	if err != nil {
		// pgx's message names host, user and database, never the password.
		return fail("PostgreSQL: "+err.Error(),
			"check store.dsn and that the server is up and reachable from this machine (pg_isready)")
	}
	defer conn.Close(context.WithoutCancel(qctx))
	var (
		versionNum, syncCommit string
		standby                bool
	)
	if err := conn.QueryRow(qctx, `SELECT current_setting('server_version_num'), current_setting('synchronous_commit'),
		pg_is_in_recovery()`).Scan(&versionNum, &syncCommit, &standby); err != nil {
		return fail("PostgreSQL: "+err.Error(), "the store's user must be able to run queries")
	}
	if standby {
		return fail("PostgreSQL server "+conn.Config().Host+" is a standby (read-only)",
			"point store.dsn at the primary")
	}
	if n, _ := strconv.Atoi(versionNum); n < 130000 {
		return fail("PostgreSQL "+versionNum+" is too old", "dispatch needs PostgreSQL 13 or newer")
	}
	schema := "no schema yet (the first node to start creates it)"
	var v int
	err = conn.QueryRow(qctx, `SELECT version FROM dispatch_schema`).Scan(&v)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42P01": // undefined_table
	case err != nil:
		return fail("PostgreSQL: reading the schema version: "+err.Error(), "the store's user must own dispatch's tables")
	default:
		schema = fmt.Sprintf("schema v%d", v)
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("PostgreSQL %s on %s, database %s, %s (server synchronous_commit %s; dispatch commits with it on)",
		versionNum, conn.Config().Host, conn.Config().Database, schema, syncCommit)
	return r
}
