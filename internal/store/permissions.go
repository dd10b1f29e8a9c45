package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/permission"
)

// Permission requests and allow_always rules (permission.Store). Each
// change is written in the same commit as its event — a new request with
// its permission_request, a close with its permission_decided — and is
// fenced like every write for its chat: only the chat's owner node asks
// and answers for it.
//
// Progress events are on the feed only while their turn runs: they are
// ordinary feed rows (so readers and webhook endpoints that subscribe get
// them in order with everything else), and DropProgress removes a chat's
// when its turn ends (and every chat's at start-up).

var _ permission.Store = (*Store[Tx])(nil)

// CreateRequest keeps the new, open request r with its permission_request
// event.
func (s *Store[T]) CreateRequest(ctx context.Context, r permission.Request) error {
	if r.ID == "" || r.ChatID == "" {
		return errors.New("store: permission request: empty id or chat")
	}
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fenced(ctx, tx, r.ChatID); err != nil {
			return err
		}
		if err := tx.InsertPermission(ctx, r); err != nil {
			return err
		}
		ev := permission.RequestedEvent(r)
		return s.appendEvent(ctx, tx, &ev)
	})
	if err != nil {
		return fmt.Errorf("store: permission request %s: %w", r.ID, err)
	}
	return nil
}

// CloseRequest closes request id by permission.Close in one commit with
// its permission_decided event. A request already closed is returned as
// it was closed with permission.ErrClosed; an answer at or after the
// expiry closes it as expired (and is refused with ErrClosed).
// permission.ErrNotFound for an unknown id.
func (s *Store[T]) CloseRequest(ctx context.Context, id string, d permission.Decision, by, reason string, now time.Time) (permission.Request, error) {
	var (
		out      permission.Request
		closeErr error
	)
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		r, err := tx.PermissionForUpdate(ctx, id)
		if err != nil {
			return err
		}
		closed, cerr := permission.Close(r, d, by, reason, now)
		out, closeErr = closed, cerr
		if !r.Open() || closed.Open() { // nothing changes
			return nil
		}
		if err := s.fenced(ctx, tx, r.ChatID); err != nil {
			return err
		}
		if err := tx.ClosePermission(ctx, closed); err != nil {
			return err
		}
		ev := permission.DecidedEvent(closed)
		return s.appendEvent(ctx, tx, &ev)
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return permission.Request{}, permission.ErrNotFound
	case err != nil:
		return permission.Request{}, fmt.Errorf("store: close permission request %s: %w", id, err)
	}
	return out, closeErr
}

// GetRequest returns request id, open or closed (permission.ErrNotFound).
func (s *Store[T]) GetRequest(ctx context.Context, id string) (permission.Request, error) {
	r, err := s.d.Permission(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return permission.Request{}, permission.ErrNotFound
	case err != nil:
		return permission.Request{}, fmt.Errorf("store: permission request %s: %w", id, err)
	}
	return r, nil
}

// OpenRequests returns chat's open requests ("" every chat's), oldest
// first.
func (s *Store[T]) OpenRequests(ctx context.Context, chat string) ([]permission.Request, error) {
	out, err := s.d.OpenPermissions(ctx, chat)
	if err != nil {
		return nil, fmt.Errorf("store: open permission requests: %w", err)
	}
	return out, nil
}

// AddRule keeps rl, replacing the rule of the same chat and tool.
func (s *Store[T]) AddRule(ctx context.Context, rl permission.Rule) error {
	if rl.ChatID == "" || rl.Tool == "" {
		return errors.New("store: permission rule: empty chat or tool")
	}
	err := s.write(ctx, false, func(ctx context.Context, tx T) error {
		if err := s.fenced(ctx, tx, rl.ChatID); err != nil {
			return err
		}
		return tx.UpsertPermissionRule(ctx, rl)
	})
	if err != nil {
		return fmt.Errorf("store: permission rule: %w", err)
	}
	return nil
}

// Rules returns chat's rules ("" every chat's), by chat and tool.
func (s *Store[T]) Rules(ctx context.Context, chat string) ([]permission.Rule, error) {
	out, err := s.d.PermissionRules(ctx, chat)
	if err != nil {
		return nil, fmt.Errorf("store: permission rules: %w", err)
	}
	return out, nil
}

// RemoveRule removes chat's rule for tool and reports whether there was
// one. It is an operator's act, so it is not fenced: any node may remove
// a rule, and the owner reads the rules afresh for each request.
func (s *Store[T]) RemoveRule(ctx context.Context, chat, tool string) (bool, error) {
	var ok bool
	err := s.write(ctx, false, func(ctx context.Context, tx T) (err error) {
		ok, err = tx.DeletePermissionRule(ctx, chat, tool)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: remove permission rule: %w", err)
	}
	return ok, nil
}

// AppendProgress writes a progress event of chat's running turn (a
// durable write like any event, so it is ordered with the rest of the
// feed and queued for the endpoints that subscribe to progress).
func (s *Store[T]) AppendProgress(ctx context.Context, ev events.Event) error {
	if ev.Type != events.Progress {
		return fmt.Errorf("store: append progress: a %s event", ev.Type)
	}
	_, err := s.AppendEvent(ctx, ev)
	return err
}

// DropProgress removes chat's progress events ("" every chat's) and
// their webhook deliveries still queued, when the turn they belong to has
// ended, and reports how many went. Readers never see a gap they must
// mind: progress was only ever a turn's running commentary.
func (s *Store[T]) DropProgress(ctx context.Context, chat string) (int, error) {
	var n int64
	err := s.write(ctx, true, func(ctx context.Context, tx T) (err error) {
		n, err = tx.DeleteProgress(ctx, chat)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: drop progress: %w", err)
	}
	return int(n), nil
}

// PermissionColumns are the columns ScanPermission reads, in its order.
const PermissionColumns = `id, chat_id, agent_id, tool_use_id, tool, summary, input, created_at, expires_at, decision, decided_by, decided_at, reason`

// ScanPermission reads a row of PermissionColumns.
func ScanPermission(row Scanner) (permission.Request, error) {
	var (
		r                         permission.Request
		input, decision           string
		created, expires, decided int64
	)
	err := row.Scan(&r.ID, &r.ChatID, &r.AgentID, &r.ToolUseID, &r.Tool, &r.Summary, &input,
		&created, &expires, &decision, &r.DecidedBy, &decided, &r.Reason)
	if input != "" {
		r.Input = []byte(input)
	}
	r.Decision = permission.Decision(decision)
	r.CreatedAt, r.ExpiresAt, r.DecidedAt = FromNanos(created), FromNanos(expires), FromNanos(decided)
	return r, err
}

// RuleColumns are the columns ScanRule reads, in its order.
const RuleColumns = `chat_id, tool, created_at, created_by`

// ScanRule reads a row of RuleColumns.
func ScanRule(row Scanner) (permission.Rule, error) {
	var (
		rl      permission.Rule
		created int64
	)
	err := row.Scan(&rl.ChatID, &rl.Tool, &created, &rl.CreatedBy)
	rl.CreatedAt = FromNanos(created)
	return rl, err
}
