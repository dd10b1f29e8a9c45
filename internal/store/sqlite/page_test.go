package sqlite

import (
	"context"
	"fmt"
	"github.com/dispatchd/dispatch/internal/store"
	"strings"
	"testing"
)

func TestListPage(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	big := strings.Repeat("é", 1000) // 2000 bytes
	for i := range 5 {
		if _, _, err := s.acceptID(ctx, "a", fmt.Sprintf("%d%s", i, big), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.acceptID(ctx, "b", "short", "other"); err != nil {
		t.Fatal(err)
	}
	page, more, err := s.ListPage(ctx, store.Filter{ChatID: "a"}, 0, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || !more || page[0].ID != "m0" || page[1].ID != "m1" {
		t.Fatalf("first page: %d rows, more %v", len(page), more)
	}
	if got := page[0].Text; got != "0"+strings.Repeat("é", 9) || page[0].TextBytes != 2001 || !page[0].Clipped() {
		t.Errorf("clipped text %q (%d bytes of %d)", got, len(got), page[0].TextBytes)
	}
	var ids []string
	after := int64(0)
	for {
		page, more, err := s.ListPage(ctx, store.Filter{}, after, 4, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			ids = append(ids, m.ID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].Seq
	}
	if strings.Join(ids, ",") != "m0,m1,m2,m3,m4,other" {
		t.Errorf("paged through %v", ids)
	}
	if page, _, _ := s.ListPage(ctx, store.Filter{}, 0, 1<<20, 10); len(page) != 6 {
		t.Errorf("an over-large limit: %d rows", len(page))
	}
	if _, _, err := s.ListPage(ctx, store.Filter{State: "bogus"}, 0, 1, 1); err == nil {
		t.Error("unknown state accepted")
	}
}
