package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The cluster's queries, all of them: node heartbeats, leases and their
// fencing tokens, roles, and wake-ups (internal/cluster holds their
// policy; the tables are in migration 2).

// wakeChannel is the NOTIFY channel on which a committed accept (or retry)
// names its chat, so that the chat's owner node wakes its session without
// polling.
const wakeChannel = "dispatch_wake"

// HoldLease reports whether chat's lease names node with token and has not
// expired, and holds the lease row (FOR SHARE) until the transaction ends:
// a takeover bumps the token with an UPDATE of that row, so it waits for
// this transaction to commit.
func (t *Tx) HoldLease(ctx context.Context, chat, node string, token int64) (bool, error) {
	var got int64
	err := t.QueryRow(ctx, `SELECT token FROM leases
		WHERE chat_id = $1 AND owner = $2 AND expires_at > clock_timestamp()
		FOR SHARE`, chat, node).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil && got == token, err
}

// NotifyWake queues chat's wake-up on wakeChannel: it is sent after the
// caller's commit, grouped with the other notifications queued meanwhile,
// in a transaction that does not wait for a WAL flush (notify.go); the
// caller does not wait for it. A wake-up lost (this process died first,
// the database did not answer) is made up for by the owner's scan.
func (s *DB) NotifyWake(_ context.Context, chat string) {
	s.notify(wakeChannel, chat)
}

// ListenWakes LISTENs for wake-ups on a connection of its own and hands
// each chat named to fn, until the connection fails or ctx ends (its
// error). The caller reconnects; wake-ups missed meanwhile are made up for
// by its scans.
func (s *DB) ListenWakes(ctx context.Context, fn func(chat string)) error {
	return s.listenOnce(ctx, wakeChannel, nil, fn)
}

// ClaimNode takes a session-level advisory lock on node's id, on a
// connection of its own that holds it until release is called or the
// process ends (PostgreSQL drops the lock with the connection, at once
// when a killed process's socket closes). ok is false when another
// connection holds it: another running process has this id.
func (s *DB) ClaimNode(ctx context.Context, node string) (release func(context.Context), ok bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.cfg.ConnConfig.Copy())
	if err != nil {
		return nil, false, err
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`,
		"dispatch node.id "+node).Scan(&ok); err != nil || !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	return func(ctx context.Context) { conn.Close(ctx) }, true, nil
}

// Leases is the cluster's queries for one node: its heartbeat, the leases
// on its chats (each with a fencing token that only grows), the roles
// only one node holds, and the look-ups of placement (internal/cluster
// holds the policy). Every expiry is the database's clock
// (clock_timestamp()), so the nodes' clocks never have to agree.
type Leases struct {
	db   *DB
	node string
	ttl  time.Duration
}

// Leases returns the cluster's queries for node, whose leases last ttl.
func (s *DB) Leases(node string, ttl time.Duration) Leases {
	return Leases{db: s, node: node, ttl: ttl}
}

func (d Leases) ttlMs() int64 { return d.ttl.Milliseconds() }

// LiveNode is a live node as placement sees it: its sessions.max_live and
// how many chats it holds leases on.
type LiveNode struct {
	ID      string
	MaxLive int
	Owned   int
}

// Heartbeat records the node as alive now.
func (d Leases) Heartbeat(ctx context.Context, incarnation string, maxLive int) error {
	_, err := d.db.pool.Exec(ctx, `INSERT INTO nodes (id, incarnation, max_live, started_at, heartbeat_at, stopped)
		VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp(), false)
		ON CONFLICT (id) DO UPDATE SET
			started_at = CASE WHEN nodes.incarnation = excluded.incarnation THEN nodes.started_at ELSE excluded.started_at END,
			incarnation = excluded.incarnation, max_live = excluded.max_live,
			heartbeat_at = excluded.heartbeat_at, stopped = false`, d.node, incarnation, maxLive)
	return err
}

// OtherIncarnation reports whether another process with this node's id
// has a live heartbeat (two daemons given one node.id), and how long
// until it would count as dead.
func (d Leases) OtherIncarnation(ctx context.Context, incarnation string) (bool, time.Duration, error) {
	var (
		other bool
		left  float64
	)
	err := d.db.pool.QueryRow(ctx, `SELECT incarnation <> $2 AND NOT stopped
			AND heartbeat_at > clock_timestamp() - $3 * interval '1 millisecond',
		greatest(0, extract(epoch FROM heartbeat_at + $3 * interval '1 millisecond' - clock_timestamp()))
		FROM nodes WHERE id = $1`, d.node, incarnation, d.ttlMs()).Scan(&other, &left)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, 0, nil
	}
	return other, time.Duration(left * float64(time.Second)), err
}

// Stopped marks the node as gone (a clean shutdown): it is no longer a
// place for chats.
func (d Leases) Stopped(ctx context.Context) error {
	_, err := d.db.pool.Exec(ctx, `UPDATE nodes SET stopped = true WHERE id = $1`, d.node)
	return err
}

// Live returns the live nodes: a heartbeat within the lease ttl, with the
// chats each holds.
func (d Leases) Live(ctx context.Context) ([]LiveNode, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT n.id, n.max_live,
			(SELECT count(*) FROM leases l WHERE l.owner = n.id AND l.expires_at > clock_timestamp())
		FROM nodes n
		WHERE NOT n.stopped AND n.heartbeat_at > clock_timestamp() - $1 * interval '1 millisecond'
		ORDER BY n.id`, d.ttlMs())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LiveNode, error) {
		var n LiveNode
		err := r.Scan(&n.ID, &n.MaxLive, &n.Owned)
		return n, err
	})
}

// NodeInfo is one node as status shows it.
type NodeInfo struct {
	ID          string
	Heartbeat   time.Time
	StartedAt   time.Time
	Live        bool
	Stopped     bool
	MaxLive     int
	Chats       int
	Incarnation string
}

// Nodes returns every node the database knows, for status.
func (d Leases) Nodes(ctx context.Context) ([]NodeInfo, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT n.id, n.heartbeat_at, n.started_at,
			NOT n.stopped AND n.heartbeat_at > clock_timestamp() - $1 * interval '1 millisecond',
			n.stopped, n.max_live, n.incarnation,
			(SELECT count(*) FROM leases l WHERE l.owner = n.id AND l.expires_at > clock_timestamp())
		FROM nodes n ORDER BY n.id`, d.ttlMs())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeInfo, error) {
		var n NodeInfo
		err := r.Scan(&n.ID, &n.Heartbeat, &n.StartedAt, &n.Live, &n.Stopped, &n.MaxLive, &n.Incarnation, &n.Chats)
		return n, err
	})
}

// Owners returns every chat's current owner (valid leases only).
func (d Leases) Owners(ctx context.Context) (map[string]string, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT chat_id, owner FROM leases WHERE expires_at > clock_timestamp()`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c, o string
		if err := rows.Scan(&c, &o); err != nil {
			return nil, err
		}
		out[c] = o
	}
	return out, rows.Err()
}

// Acquired is a lease just taken.
type Acquired struct {
	Token int64
	// Prev is the node that held the chat before (its lease expired, or
	// it was this node's id in an earlier process); "" for a first lease.
	Prev string
	// Reset is how many of the chat's in-flight messages went back in
	// line: the previous owner's turn that never completed.
	Reset int64
}

// Acquire takes chat's lease when it is free, expired or held under this
// node's id by an earlier process, bumping the fencing token, and puts the
// chat's in-flight messages back in line in the same commit: whoever
// claimed them can no longer write for the chat. ok false: another node
// holds a valid lease.
func (d Leases) Acquire(ctx context.Context, chat string, now time.Time) (a Acquired, ok bool, err error) {
	err = pgx.BeginFunc(ctx, d.db.pool, func(tx pgx.Tx) error {
		var (
			owner string
			token int64
			valid bool
		)
		err := tx.QueryRow(ctx, `SELECT owner, token, expires_at > clock_timestamp() FROM leases
			WHERE chat_id = $1 FOR UPDATE`, chat).Scan(&owner, &token, &valid)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			tag, err := tx.Exec(ctx, `INSERT INTO leases (chat_id, owner, token, expires_at, acquired_at)
				VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond', clock_timestamp())
				ON CONFLICT (chat_id) DO NOTHING`, chat, d.node, d.ttlMs())
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return nil // another node inserted it first
			}
			a.Token = 1
		case err != nil:
			return err
		case valid && owner != d.node:
			return nil
		default:
			if err := tx.QueryRow(ctx, `UPDATE leases SET owner = $2, token = token + 1,
					expires_at = clock_timestamp() + $3 * interval '1 millisecond', acquired_at = clock_timestamp()
				WHERE chat_id = $1 RETURNING token`, chat, d.node, d.ttlMs()).Scan(&a.Token); err != nil {
				return err
			}
			a.Prev = owner
		}
		tag, err := tx.Exec(ctx, `UPDATE messages SET state = 'pending', updated_at = $2
			WHERE chat_id = $1 AND state = 'inflight'`, chat, now.UnixNano())
		if err != nil {
			return err
		}
		a.Reset = tag.RowsAffected()
		ok = true
		return nil
	})
	if err != nil {
		return Acquired{}, false, fmt.Errorf("acquire lease of chat %q: %w", chat, err)
	}
	return a, ok, nil
}

// Renew extends the leases this node holds with the given tokens and
// returns the chats it still holds; a chat missing from the answer was
// taken over (its token moved on).
func (d Leases) Renew(ctx context.Context, held map[string]int64) (map[string]bool, error) {
	out := make(map[string]bool, len(held))
	if len(held) == 0 {
		return out, nil
	}
	chats := make([]string, 0, len(held))
	tokens := make([]int64, 0, len(held))
	for c, t := range held {
		chats, tokens = append(chats, c), append(tokens, t)
	}
	rows, err := d.db.pool.Query(ctx, `UPDATE leases l SET expires_at = clock_timestamp() + $2 * interval '1 millisecond'
		FROM unnest($3::text[], $4::bigint[]) AS h(c, t)
		WHERE l.chat_id = h.c AND l.token = h.t AND l.owner = $1
		RETURNING l.chat_id`, d.node, d.ttlMs(), chats, tokens)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, c := range got {
		out[c] = true
	}
	return out, nil
}

// Release ends the given leases now (a clean shutdown, or leases this
// node gave up), so another node may take the chats at once. The rows
// stay: a token never goes back.
func (d Leases) Release(ctx context.Context, held map[string]int64) error {
	if len(held) == 0 {
		return nil
	}
	chats := make([]string, 0, len(held))
	tokens := make([]int64, 0, len(held))
	for c, t := range held {
		chats, tokens = append(chats, c), append(tokens, t)
	}
	_, err := d.db.pool.Exec(ctx, `UPDATE leases l SET expires_at = clock_timestamp()
		FROM unnest($2::text[], $3::bigint[]) AS h(c, t)
		WHERE l.chat_id = h.c AND l.token = h.t AND l.owner = $1`, d.node, chats, tokens)
	return err
}

// Unowned returns the chats with messages waiting or in flight and no
// valid lease: the ones a live node must take (new chats, and a dead
// node's).
func (d Leases) Unowned(ctx context.Context) ([]string, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT m.chat_id FROM messages m
		LEFT JOIN leases l ON l.chat_id = m.chat_id
		WHERE m.state IN ('pending', 'inflight')
			AND (l.chat_id IS NULL OR l.expires_at <= clock_timestamp())
		GROUP BY m.chat_id ORDER BY min(m.seq)`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// LeaseValid reports whether chat has a valid lease (any owner).
func (d Leases) LeaseValid(ctx context.Context, chat string) (bool, error) {
	var v bool
	err := d.db.pool.QueryRow(ctx, `SELECT EXISTS(SELECT 1 FROM leases
		WHERE chat_id = $1 AND expires_at > clock_timestamp())`, chat).Scan(&v)
	return v, err
}

// TakeRole takes or renews the role name (free, expired or already this
// node's) and reports whether this node holds it.
func (d Leases) TakeRole(ctx context.Context, name string) (bool, error) {
	var owner string
	err := d.db.pool.QueryRow(ctx, `INSERT INTO roles (name, owner, token, expires_at, acquired_at)
		VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond', clock_timestamp())
		ON CONFLICT (name) DO UPDATE SET
			token = CASE WHEN roles.owner = excluded.owner THEN roles.token ELSE roles.token + 1 END,
			acquired_at = CASE WHEN roles.owner = excluded.owner THEN roles.acquired_at ELSE excluded.acquired_at END,
			owner = excluded.owner, expires_at = excluded.expires_at
		WHERE roles.owner = excluded.owner OR roles.expires_at <= clock_timestamp()
		RETURNING owner`, name, d.node, d.ttlMs()).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil && owner == d.node, err
}

// ReleaseRole gives the role up now.
func (d Leases) ReleaseRole(ctx context.Context, name string) error {
	_, err := d.db.pool.Exec(ctx, `UPDATE roles SET expires_at = clock_timestamp() WHERE name = $1 AND owner = $2`, name, d.node)
	return err
}

// RoleHolders returns each role's node, for the roles whose lease has not
// expired.
func (d Leases) RoleHolders(ctx context.Context) (map[string]string, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT name, owner FROM roles WHERE expires_at > clock_timestamp()`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, owner string
		if err := rows.Scan(&name, &owner); err != nil {
			return nil, err
		}
		out[name] = owner
	}
	return out, rows.Err()
}

// Waiting returns those of chats with a message waiting since before
// cutoff (unix nanoseconds).
func (d Leases) Waiting(ctx context.Context, chats []string, cutoff int64) ([]string, error) {
	rows, err := d.db.pool.Query(ctx, `SELECT DISTINCT chat_id FROM messages
		WHERE state = 'pending' AND chat_id = ANY($1) AND updated_at < $2`, chats, cutoff)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
