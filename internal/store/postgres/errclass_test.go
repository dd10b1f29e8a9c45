package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code, Message: "x"} }
	for _, tt := range []struct {
		name string
		err  error
		want error // store.ErrNoSpace, store.ErrIO, or nil: left as it is
	}{
		{"disk full (errno)", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, store.ErrNoSpace},
		{"disk full (53100)", pg("53100"), store.ErrNoSpace},
		{"I/O error", syscall.EIO, store.ErrIO},
		{"pg_hba refuses (28000)", pg("28000"), store.ErrIO},
		{"wrong password (28P01)", pg("28P01"), store.ErrIO},
		{"refusal while connecting", fmt.Errorf("store: accept: %w", &pgconn.ConnectError{}), store.ErrIO},
		{"connection failure (08006)", pg("08006"), store.ErrIO},
		{"admin shutdown (57P01)", pg("57P01"), store.ErrIO},
		{"crash shutdown (57P02)", pg("57P02"), store.ErrIO},
		{"cannot connect now (57P03)", pg("57P03"), store.ErrIO},
		{"too many connections (53300)", pg("53300"), store.ErrIO},
		{"read-only standby (25006)", pg("25006"), store.ErrIO},
		{"idle in transaction too long (25P03)", pg("25P03"), store.ErrIO},
		{"other invalid transaction state (25P02)", pg("25P02"), nil},
		{"conn closed", fmt.Errorf("begin: %w", pgconn.ErrConnClosed), store.ErrIO},
		{"tx closed", pgx.ErrTxClosed, store.ErrIO},
		{"connection cut", io.ErrUnexpectedEOF, store.ErrIO},
		{"connection refused", &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}, store.ErrIO},
		{"connection reset", syscall.ECONNRESET, store.ErrIO},
		{"deadline", context.DeadlineExceeded, store.ErrIO},
		{"unique violation (23505)", pg("23505"), nil},
		{"undefined table (42P01)", pg("42P01"), nil},
		{"an error of our own", errors.New("message id collision"), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			switch {
			case tt.want == nil && (store.IsStorage(got) || got != tt.err):
				t.Errorf("classify(%v) = %v, want it unchanged", tt.err, got)
			case tt.want != nil && !errors.Is(got, tt.want):
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			case tt.want != nil && !errors.Is(got, tt.err):
				t.Errorf("classify(%v) = %v lost the original error", tt.err, got)
			}
		})
	}
	if classify(nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}

// The connection-level failures of a real server are storage failures
// (the API answers 503, which clients retry), not faults of their own
// (500): a role the server refuses (SQLSTATE 28000, as when pg_hba
// refuses), a port nobody listens on, a connection closed under the
// driver, and a store whose connections the server terminated.
func TestConnectionFailuresAreStorageFailures(t *testing.T) {
	server := pgtest.ServerDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(server)
	if err != nil {
		t.Fatal(err)
	}

	refused := cfg.Copy()
	refused.User = "dispatch_no_such_role"
	_, err = pgx.ConnectConfig(ctx, refused)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code[:2] != "28" {
		t.Fatalf("connect as an unknown role: %v, want SQLSTATE 28xxx", err)
	}
	if !errors.Is(classify(err), store.ErrIO) {
		t.Errorf("refused by the server: %v is not a storage failure", err)
	}

	closedPort := cfg.Copy()
	closedPort.Port = 1
	closedPort.ConnectTimeout = 5 * time.Second
	if _, err := pgx.ConnectConfig(ctx, closedPort); !errors.Is(classify(err), store.ErrIO) {
		t.Errorf("closed port: %v is not a storage failure", err)
	}

	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.PgConn().Conn().Close() // the socket goes away under the driver
	_, err = c.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("a query on a closed connection succeeded")
	}
	if !errors.Is(classify(err), store.ErrIO) {
		t.Errorf("closed connection: %v is not a storage failure", err)
	}
	_, err = c.Exec(ctx, "SELECT 1") // and again, once pgx has marked it closed
	if !errors.Is(classify(err), store.ErrIO) {
		t.Errorf("connection marked closed: %v is not a storage failure", err)
	}

	dsn := pgtest.NewDatabase(t)
	s, err := OpenStore(ctx, dsn, clock.Real{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Accept(ctx, "c", "before", ""); err != nil {
		t.Fatal(err)
	}
	dbcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, dbcfg.Database); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Accept(ctx, "c", "after", ""); err != nil && !store.IsStorage(err) {
		t.Errorf("accept on a terminated connection: %v is not a storage failure", err)
	}
}
