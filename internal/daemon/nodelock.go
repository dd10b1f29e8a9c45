package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// nodeLockKey is the session-level advisory lock one node holds on a
// PostgreSQL store. Several nodes on one database need per-chat leases
// with fencing, which this build does not have yet, so a second node is
// refused rather than left to answer the same chats twice.
const nodeLockKey int64 = 0x64697370_00000002

// errNodeLock: another node holds the store.
var errNodeLock = errors.New("another dispatch node is running on this PostgreSQL database; this build supports one node per database")

// holdNodeLock takes the one-node lock on a connection of its own and
// keeps it: while the connection lives, the lock does. When the connection
// breaks (the lock goes with it) it reconnects and takes the lock again;
// if another node took it meanwhile, lost reports errNodeLock and the
// daemon stops. An unreachable database is not a loss: no other node can
// take the lock while it is down either.
func holdNodeLock(ctx context.Context, dsn string, log *slog.Logger) (lost <-chan error, release func(), err error) {
	conn, err := lockConn(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan error, 1)
	hctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
			}
			if conn != nil {
				pctx, pcancel := context.WithTimeout(hctx, 5*time.Second)
				err := conn.Ping(pctx)
				pcancel()
				if err == nil || hctx.Err() != nil {
					continue
				}
				log.Warn("the PostgreSQL connection holding this node's lock broke; taking the lock again", "err", err)
				conn.Close(context.Background())
				conn = nil
			}
			c, err := lockConn(hctx, dsn)
			switch {
			case errors.Is(err, errNodeLock):
				out <- err
				return
			case err != nil:
				continue // down: try again at the next tick
			}
			conn = c
			log.Info("this node's PostgreSQL lock is held again")
		}
	}()
	return out, func() { cancel(); <-done }, nil
}

func lockConn(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("store (postgres): %w", err)
	}
	var got bool
	if err := conn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1)`, nodeLockKey).Scan(&got); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("store (postgres): %w", err)
	}
	if !got {
		conn.Close(context.Background())
		return nil, errNodeLock
	}
	return conn, nil
}
