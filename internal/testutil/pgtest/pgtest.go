// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// The server is named by DISPATCH_TEST_PG_DSN (for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). Without it a
// test that needs PostgreSQL skips, saying so — except under CI (CI=true),
// where it fails: the CI machine must run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN is the variable naming the test server.
const EnvDSN = "DISPATCH_TEST_PG_DSN"

// ServerDSN returns the test server's DSN, or skips (fails under CI) when
// none is set.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		msg := "PostgreSQL tests need " + EnvDSN + " (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); see the README"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " — under CI they must run")
		}
		t.Skip(msg)
	}
	return dsn
}

// NewDatabase creates an empty database dispatch_test_<random> on the test
// server, drops it when the test ends, and returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := ServerDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "dispatch_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("connect to the test server %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	u.Path = "/" + name
	return u.String()
}
