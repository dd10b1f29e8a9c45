package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/clock"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/store"
)

// The channels' part of the contract.

// testChannelAccept: a channel's message and its inbound cursor commit
// together; a second copy of an update is a duplicate that still moves
// the cursor; the cursor never moves down and survives a restart.
func testChannelAccept(t *testing.T, s Suite) {
	clk := clock.NewFake(T0)
	o := s.NewDB(t)
	st, err := o(clk)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := st.ChannelCursor(bg, "telegram"); err != nil || c.Inbound != 0 || c.Feed != 0 {
		t.Fatalf("fresh cursor = %+v, %v", c, err)
	}
	id, dup, err := st.AcceptFromChannel(bg, "telegram", 11, "tg:1", "hello", "10")
	if err != nil || dup {
		t.Fatalf("accept = %q %v %v", id, dup, err)
	}
	if m := get(t, st, id); m.ChatID != "tg:1" || m.ClientID != "10" || m.State != store.Pending || m.Text != "hello" {
		t.Fatalf("stored %+v", m)
	}
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 11 || c.Channel != "telegram" {
		t.Fatalf("cursor after accept = %+v", c)
	}
	// The same update again (the cursor's commit was not seen): the same
	// message, whatever the text, and the cursor moves on.
	again, dup, err := st.AcceptFromChannel(bg, "telegram", 12, "tg:1", "edited", "10")
	if err != nil || !dup || again != id {
		t.Fatalf("second copy = %q %v %v", again, dup, err)
	}
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 12 {
		t.Fatalf("cursor after a duplicate = %+v", c)
	}
	// A plain accept of the same (chat, client id) is refused as ever.
	if again, dup, err := st.Accept(bg, "tg:1", "hello", "10"); err != nil || !dup || again != id {
		t.Fatalf("plain accept of the same key = %q %v %v", again, dup, err)
	}
	if _, _, err := st.Accept(bg, "tg:1", "other", "10"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("plain accept, other text = %v", err)
	}
	// The same update id in another chat is another message.
	if other, dup, err := st.AcceptFromChannel(bg, "telegram", 13, "tg:2", "hi", "10"); err != nil || dup || other == id {
		t.Fatalf("other chat = %q %v %v", other, dup, err)
	}
	// The cursor never moves down; an update with no message moves it up.
	if err := st.ChannelAdvance(bg, "telegram", 5); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 13 {
		t.Fatalf("cursor moved down: %+v", c)
	}
	if err := st.ChannelAdvance(bg, "telegram", 20); err != nil {
		t.Fatal(err)
	}
	// Channels keep their own cursors.
	if c, _ := st.ChannelCursor(bg, "work"); c.Inbound != 0 {
		t.Fatalf("another channel's cursor = %+v", c)
	}
	// A failed write changes neither the queue nor the cursor.
	st.InjectWriteFault(func() error { return fmt.Errorf("disk: %w", syscall.ENOSPC) })
	if _, _, err := st.AcceptFromChannel(bg, "telegram", 30, "tg:1", "lost", "29"); !store.IsStorage(err) {
		t.Fatalf("accept under a fault = %v", err)
	}
	st.InjectWriteFault(nil)
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 20 {
		t.Fatalf("cursor after a failed accept = %+v", c)
	}
	if got, _ := st.List(bg, store.Filter{ChatID: "tg:1"}); len(got) != 1 {
		t.Fatalf("messages after a failed accept: %+v", got)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = o(clk); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 20 {
		t.Fatalf("cursor after a restart = %+v", c)
	}
}

// testChannelAcceptRace: the same update accepted by many writers at once
// is stored once.
func testChannelAcceptRace(t *testing.T, s Suite) {
	st, _ := open(t, s)
	const n = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fresh int
		ids   []string
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, dup, err := st.AcceptFromChannel(bg, "telegram", int64(100+i), "tg:7", "once", "99")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, id)
			if !dup {
				fresh++
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	if fresh != 1 || len(slices.Compact(ids)) != 1 {
		t.Fatalf("%d fresh accepts, ids %v", fresh, ids)
	}
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Inbound != 100+n-1 {
		t.Fatalf("cursor = %+v", c)
	}
}

// testChannelDeliveries: deliveries are enqueued once with the feed
// cursor, come back in seq order, record the parts the platform accepted,
// wait, give up and are purged once done.
func testChannelDeliveries(t *testing.T, s Suite) {
	st, clk := open(t, s)
	ds := []store.ChannelDelivery{
		{Seq: 3, ChatID: "tg:1", Kind: events.Reply, Text: "first"},
		{Seq: 5, ChatID: "tg:2", Kind: events.DeadLetter, Text: "boom"},
		{Seq: 8, ChatID: "tg:1", Kind: events.Reply, Text: "second"},
	}
	if err := st.ChannelEnqueue(bg, "telegram", 9, ds); err != nil {
		t.Fatal(err)
	}
	// Enqueued again (a restart before the feed cursor was seen): nothing
	// doubles, and the feed cursor does not move down.
	if err := st.ChannelEnqueue(bg, "telegram", 6, ds[:2]); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.ChannelCursor(bg, "telegram"); c.Feed != 9 || c.Inbound != 0 {
		t.Fatalf("cursor = %+v", c)
	}
	p, err := st.PendingDeliveries(bg, "telegram", 10)
	if err != nil || len(p) != 3 {
		t.Fatalf("pending = %+v, %v", p, err)
	}
	for i, d := range p {
		if d.Seq != ds[i].Seq || d.ChatID != ds[i].ChatID || d.Kind != ds[i].Kind || d.Text != ds[i].Text ||
			d.State != store.DeliveryPending || d.Channel != "telegram" || d.Sent != 0 || d.PlatformIDs != nil {
			t.Fatalf("pending[%d] = %+v", i, d)
		}
	}
	if p, _ := st.PendingDeliveries(bg, "slack", 10); len(p) != 0 {
		t.Fatalf("another channel's pending = %+v", p)
	}
	// A rate limit holds the delivery, counted.
	d := p[0]
	d.Attempts, d.NextAt, d.Error = 1, T0.Add(30*time.Second), "429: retry after 30"
	if err := st.DeliveryAttempt(bg, d); err != nil {
		t.Fatal(err)
	}
	counts, err := st.DeliveryCounts(bg)
	if err != nil || counts["telegram"].Pending != 3 || !counts["telegram"].HeldUntil.Equal(T0.Add(30*time.Second)) {
		t.Fatalf("counts = %+v, %v", counts, err)
	}
	// One part accepted: still pending, the retry state cleared.
	d.Sent, d.PlatformIDs = 1, []string{"101"}
	if err := st.DeliverySent(bg, d); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Deliveries(bg, "telegram", "tg:1", 10)
	if len(got) != 2 || got[0].Sent != 1 || !slices.Equal(got[0].PlatformIDs, []string{"101"}) ||
		got[0].State != store.DeliveryPending || got[0].Attempts != 0 || !got[0].NextAt.IsZero() || got[0].Error != "" {
		t.Fatalf("after one part = %+v", got)
	}
	// Every part: done, with the platform's ids in order.
	d.Sent, d.PlatformIDs, d.State = 2, []string{"101", "102"}, store.DeliveryDone
	if err := st.DeliverySent(bg, d); err != nil {
		t.Fatal(err)
	}
	// A refusal gives up.
	g := p[1]
	g.Attempts, g.Error = 1, "403: bot was blocked"
	if err := st.DeliveryGiveUp(bg, g); err != nil {
		t.Fatal(err)
	}
	// A done delivery is not changed by a late write.
	late := d
	late.State, late.Sent = store.DeliveryPending, 1
	if err := st.DeliverySent(bg, late); err != nil {
		t.Fatal(err)
	}
	p, _ = st.PendingDeliveries(bg, "telegram", 10)
	if len(p) != 1 || p[0].Seq != 8 {
		t.Fatalf("pending after = %+v", p)
	}
	all, _ := st.Deliveries(bg, "telegram", "", 10)
	if len(all) != 3 || all[0].State != store.DeliveryDone || !slices.Equal(all[0].PlatformIDs, []string{"101", "102"}) ||
		all[1].State != store.DeliveryFailed || all[1].Error != "403: bot was blocked" {
		t.Fatalf("deliveries = %+v", all)
	}
	counts, _ = st.DeliveryCounts(bg)
	if c := counts["telegram"]; c.Pending != 1 || c.Failed != 1 || c.Done != 1 || !c.HeldUntil.IsZero() {
		t.Fatalf("counts = %+v", c)
	}
	// A late record of fewer parts (a node that lost the channel's role
	// records a part after the next holder recorded more) never moves the
	// count back: those parts would be sent again.
	e := p[0]
	e.Sent, e.PlatformIDs = 2, []string{"201", "202"}
	if err := st.DeliverySent(bg, e); err != nil {
		t.Fatal(err)
	}
	e.Sent, e.PlatformIDs = 1, []string{"201"}
	if err := st.DeliverySent(bg, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.PendingDeliveries(bg, "telegram", 10); len(got) != 1 || got[0].Sent != 2 || !slices.Equal(got[0].PlatformIDs, []string{"201", "202"}) {
		t.Fatalf("after a late record of fewer parts = %+v", got)
	}
	// Done deliveries are purged once old; the others stay.
	clk.Advance(time.Hour)
	if n, err := st.PurgeDelivered(bg, clk.Now(), 0); err != nil || n != 1 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if all, _ := st.Deliveries(bg, "telegram", "", 10); len(all) != 2 {
		t.Fatalf("after purge = %+v", all)
	}
}
