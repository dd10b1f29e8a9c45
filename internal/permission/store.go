package permission

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/dispatchd/dispatch/internal/events"
)

// ErrNotFound: no request has that id.
var ErrNotFound = errors.New("no such permission request")

// Store keeps permission requests and allow_always rules for a Broker. A
// store writes each change together with its event in one commit:
// CreateRequest with RequestedEvent(r), CloseRequest with DecidedEvent of
// the closed request, so the feed never shows a request that was not kept
// nor misses one that was.
type Store interface {
	// CreateRequest keeps the new, open request r.
	CreateRequest(ctx context.Context, r Request) error
	// CloseRequest closes request id by the rule Close, atomically: of
	// two answers at once, one wins and the other gets ErrClosed with the
	// request as it was closed. ErrNotFound for an unknown id.
	CloseRequest(ctx context.Context, id string, d Decision, by, reason string, now time.Time) (Request, error)
	// GetRequest returns request id, open or closed.
	GetRequest(ctx context.Context, id string) (Request, error)
	// OpenRequests returns chat's open requests ("" every chat's), oldest
	// first.
	OpenRequests(ctx context.Context, chat string) ([]Request, error)
	// AddRule keeps rl, replacing a rule of the same chat and tool.
	AddRule(ctx context.Context, rl Rule) error
	// Rules returns chat's rules ("" every chat's).
	Rules(ctx context.Context, chat string) ([]Rule, error)
	// RemoveRule removes chat's rule for tool and reports whether there
	// was one.
	RemoveRule(ctx context.Context, chat, tool string) (bool, error)
}

// RequestedEvent is the permission_request event of r.
func RequestedEvent(r Request) events.Event {
	return events.NewPermissionRequest(r.CreatedAt, r.ChatID, r.ID, r.Tool, r.Summary, r.ExpiresAt)
}

// DecidedEvent is the permission_decided event of the closed request r.
func DecidedEvent(r Request) events.Event {
	return events.NewPermissionDecided(r.DecidedAt, r.ChatID, r.ID, r.Tool, string(r.Decision), r.DecidedBy, r.Reason)
}

// Memory is an in-memory Store for tests. Its Events are the events a
// durable store would have written, in order.
type Memory struct {
	mu     sync.Mutex
	reqs   map[string]Request
	order  []string
	rules  []Rule
	events []events.Event
	// Err, when set, fails every call (a store outage).
	Err error
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{reqs: map[string]Request{}} }

// Events returns the events written so far.
func (m *Memory) Events() []events.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func (m *Memory) CreateRequest(_ context.Context, r Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return m.Err
	}
	if _, ok := m.reqs[r.ID]; ok || r.ID == "" {
		return errors.New("permission request id taken or empty: " + r.ID)
	}
	m.reqs[r.ID] = r
	m.order = append(m.order, r.ID)
	m.events = append(m.events, RequestedEvent(r))
	return nil
}

func (m *Memory) CloseRequest(_ context.Context, id string, d Decision, by, reason string, now time.Time) (Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return Request{}, m.Err
	}
	r, ok := m.reqs[id]
	if !ok {
		return Request{}, ErrNotFound
	}
	closed, err := Close(r, d, by, reason, now)
	if !closed.Open() && r.Open() { // closed now (an answer, or the expiry that beat it)
		m.reqs[id] = closed
		m.events = append(m.events, DecidedEvent(closed))
	}
	return closed, err
}

func (m *Memory) GetRequest(_ context.Context, id string) (Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return Request{}, m.Err
	}
	r, ok := m.reqs[id]
	if !ok {
		return Request{}, ErrNotFound
	}
	return r, nil
}

func (m *Memory) OpenRequests(_ context.Context, chat string) ([]Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return nil, m.Err
	}
	var out []Request
	for _, id := range m.order {
		if r := m.reqs[id]; r.Open() && (chat == "" || r.ChatID == chat) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *Memory) AddRule(_ context.Context, rl Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return m.Err
	}
	m.rules = slices.DeleteFunc(m.rules, func(x Rule) bool { return x.ChatID == rl.ChatID && x.Tool == rl.Tool })
	m.rules = append(m.rules, rl)
	return nil
}

func (m *Memory) Rules(_ context.Context, chat string) ([]Rule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return nil, m.Err
	}
	var out []Rule
	for _, rl := range m.rules {
		if chat == "" || rl.ChatID == chat {
			out = append(out, rl)
		}
	}
	return out, nil
}

func (m *Memory) RemoveRule(_ context.Context, chat, tool string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Err != nil {
		return false, m.Err
	}
	n := len(m.rules)
	m.rules = slices.DeleteFunc(m.rules, func(x Rule) bool { return x.ChatID == chat && x.Tool == tool })
	return len(m.rules) < n, nil
}
