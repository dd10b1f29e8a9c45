package supervisor

import (
	"context"

	"github.com/dispatchd/dispatch/internal/store"
)

// MessagePage lists one page of stored messages, texts clipped (see
// store.ListPage).
func (s *Supervisor) MessagePage(ctx context.Context, f store.Filter, after int64, limit, clip int) ([]store.Listed, bool, error) {
	return s.store.ListPage(ctx, f, after, limit, clip)
}
