package store

import (
	"testing"

	"github.com/google/uuid"
)

// Message ids made one after another sort in that order (they land at the
// end of the id index, not on a random page of it) and are still UUIDs.
func TestMessageIDsSortByCreation(t *testing.T) {
	prev := ""
	for i := range 20000 {
		id := NewMessageID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 {
			t.Fatalf("id %d = %q: version %v, %v", i, id, u.Version(), err)
		}
		if id <= prev {
			t.Fatalf("id %d = %q sorts before the one made before it, %q", i, id, prev)
		}
		prev = id
	}
}
