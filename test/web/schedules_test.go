package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dispatchd/dispatch/internal/testutil/daemontest"
	"github.com/dispatchd/dispatch/internal/wire"
)

// TestScheduleSection: the section is hidden without schedules; a
// schedule shows with its chat, its times, its next firing on the
// browser's clock and on its zone's; pause and resume from the page act
// on the daemon; remove asks first, then removes, and the section hides
// again.
func TestScheduleSection(t *testing.T) {
	b := newBrowser(t)
	d := daemontest.Start(t, daemontest.Options{})
	w := startWeb(t, d)
	b.must("open the printed URL", chromedp.Navigate(w.URL))
	b.waitJS(`document.querySelector('#daemon').textContent.includes('pid ')`, 10*time.Second, "the page to connect")
	var hidden bool
	if err := b.eval(`document.querySelector('#sched-section').hidden`, &hidden); err != nil || !hidden {
		t.Fatalf("the schedule section shows without schedules (hidden=%v, %v)", hidden, err)
	}

	ctx := context.Background()
	c := d.Client()
	s, err := c.AddSchedule(ctx, wire.ScheduleIn{ChatID: "alice", Text: "summarise my inbox", Cron: "0 8 * * 1-5", TZ: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	// The page reads the schedules every 10 s; a reload reads them now
	// (the session token is kept in the tab).
	b.must("reload", chromedp.Reload())
	row := `document.querySelector('#schedules tbody tr[data-id="` + s.ID + `"]')`
	b.waitJS(row, 15*time.Second, "the schedule on the page")
	var cells []string
	if err := b.eval(`[...`+row+`.children].map(td => td.textContent)`, &cells); err != nil {
		t.Fatal(err)
	}
	if len(cells) < 6 || cells[0] != "alice" || !strings.Contains(cells[1], "cron 0 8 * * 1-5Europe/Berlin") ||
		!strings.Contains(cells[1], "summarise my inbox") || !strings.Contains(cells[2], "Europe/Berlin") ||
		!strings.Contains(cells[2], "08:00") || cells[3] != "–" || cells[4] != "active" {
		t.Fatalf("row = %q", cells)
	}
	b.screenshot(artifacts(t), "schedules.png")

	click := func(sel string) {
		t.Helper()
		var ok bool
		if err := b.eval(row+`.querySelector('`+sel+`').click(), true`, &ok); err != nil {
			t.Fatalf("click %s: %v", sel, err)
		}
	}
	paused := func() bool {
		got, err := c.Schedule(ctx, s.ID)
		return err == nil && got.Paused
	}
	click("button.pause")
	daemontest.WaitFor(t, paused, 10*time.Second, "the schedule paused")
	b.waitJS(row+` && `+row+`.querySelector('td.state').textContent === 'paused' && `+row+`.querySelector('button.resume')`, 10*time.Second, "the row to say paused")
	click("button.resume")
	daemontest.WaitFor(t, func() bool { return !paused() }, 10*time.Second, "the schedule resumed")
	b.waitJS(row+` && `+row+`.querySelector('button.pause')`, 10*time.Second, "the row to offer pause again")

	click("button.remove")
	b.waitJS(row+`.querySelector('button.remove').textContent === 'remove for good?'`, 5*time.Second, "remove to ask first")
	if _, err := c.Schedule(ctx, s.ID); err != nil {
		t.Fatalf("the first click removed the schedule: %v", err)
	}
	click("button.remove")
	daemontest.WaitFor(t, func() bool { ss, err := c.Schedules(ctx, ""); return err == nil && len(ss) == 0 }, 10*time.Second, "the schedule removed")
	b.waitJS(`document.querySelector('#sched-section').hidden`, 10*time.Second, "the section to hide again")
}
