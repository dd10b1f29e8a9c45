// Package cluster runs the real dispatch binary on PostgreSQL
// (store.driver: postgres), against the stub Claude CLI, through its
// external surface only. The tests need DISPATCH_TEST_PG_DSN (see the
// README); without it they skip, and under CI=true they fail.
package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/events"
	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// pgOpts is the configuration of a node on the database at dsn.
func pgOpts(dsn string, more map[string]any) daemontest.Options {
	return daemontest.Set(daemontest.With(map[string]any{
		"store.driver":                    "postgres",
		"store.dsn":                       dsn,
		"health.stuck_timeout":            "1m",
		"health.first_turn_stuck_timeout": "2m",
		"health.idle_timeout":             "1h",
	}, more))
}

// replies reads every reply event of chat from the feed, in feed order.
func replies(t *testing.T, d *daemontest.Daemon, chat string) []events.Event {
	t.Helper()
	var out []events.Event
	after := int64(0)
	for {
		st, body := d.Get(fmt.Sprintf("/v1/events?after=%d&chat=%s&types=reply&limit=1000", after, chat))
		if st != http.StatusOK {
			t.Fatalf("GET /v1/events: HTTP %d: %s", st, body)
		}
		var page api.EventsOut
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 {
			return out
		}
		after = page.Next
	}
}

// answeredOrder is the order in which chat's messages were answered: the
// message ids of its reply events, in feed order.
func answeredOrder(t *testing.T, d *daemontest.Daemon, chat string) []string {
	var ids []string
	for _, e := range replies(t, d, chat) {
		ids = append(ids, e.MessageIDs...)
	}
	return ids
}

// One node on PostgreSQL does what one node on SQLite does: messages over
// several chats are all answered, each chat in its order, with one reply
// event per turn; after kill -9 and a restart nothing is lost and the
// state (sessions, messages, feed) is the database's, not a file's.
func TestPostgresSingleNode(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	d := daemontest.Start(t, pgOpts(dsn, nil))
	chats := []string{"alpha", "beta", "gamma"}
	sent := map[string][]string{}
	for i := range 8 {
		for _, c := range chats {
			sent[c] = append(sent[c], d.Send(c, fmt.Sprintf("%s #%02d", c, i)))
		}
	}
	for _, c := range chats {
		for _, id := range sent[c] {
			d.WaitMessage(id, "done", 60*time.Second)
		}
		if got := answeredOrder(t, d, c); !slices.Equal(got, sent[c]) {
			t.Fatalf("chat %s answered %v, sent %v", c, got, sent[c])
		}
	}
	if _, err := os.Stat(filepath.Join(d.StateDir, "dispatch.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite database was made in the state dir: %v", err)
	}
	// kill -9 with messages waiting; the restarted node answers them all.
	for i := range 4 {
		sent["alpha"] = append(sent["alpha"], d.Send("alpha", fmt.Sprintf("alpha late #%02d", i)))
	}
	d.Kill9()
	d.Restart()
	for _, id := range sent["alpha"] {
		d.WaitMessage(id, "done", 60*time.Second)
	}
	if got := answeredOrder(t, d, "alpha"); !slices.Equal(got, sent["alpha"]) {
		t.Fatalf("after kill -9: alpha answered %v, sent %v", got, sent["alpha"])
	}
	if s := d.MustSession("alpha"); s.SessionID == "" {
		t.Fatalf("alpha's session after restart: %+v", s)
	}
}
