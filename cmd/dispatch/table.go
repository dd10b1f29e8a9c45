package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mattn/go-runewidth"

	"github.com/dispatchd/dispatch/internal/termsafe"
)

// table prints aligned columns by display width: an emoji or a CJK
// character takes two terminal columns, a combining mark none, so a chat id
// such as "家族-🍕" lines up with "alice" (text/tabwriter counts runes and
// would not). Every cell is escaped with termsafe.Line first: a chat id or
// a text cannot drive the terminal.
type table struct {
	rows [][]string
}

func newTable(header ...string) *table { return &table{rows: [][]string{header}} }

// add appends a row; each cell is fmt.Sprint'ed and escaped.
func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = termsafe.Line(fmt.Sprint(c))
	}
	t.rows = append(t.rows, row)
}

// len is the number of rows below the header.
func (t *table) len() int { return len(t.rows) - 1 }

// print writes the table: columns two spaces apart, no trailing blanks.
func (t *table) print(w io.Writer) error {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], runewidth.StringWidth(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-runewidth.StringWidth(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell is s escaped for one table cell and clipped to n columns of display
// width, with an ellipsis when clipped.
func cell(s string, n int) string {
	s = termsafe.Line(s)
	if runewidth.StringWidth(s) <= n {
		return s
	}
	return runewidth.Truncate(s, n, "…")
}

// human renders a duration in the largest sensible units: 42s, 3m12s, 2h5m, 3d4h.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// age shows an RFC 3339 time as how long ago it was, in its largest unit:
// "12s ago", "3m ago", "5h ago", "2d ago". A time it cannot read is shown
// as it is.
func age(rfc3339 string, now time.Time) string {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return rfc3339
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours())/24)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// shellArg is s as one word a person can paste into a shell (quoted when
// needed), escaped for the terminal: for the commands an error suggests.
func shellArg(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return termsafe.Line("'" + strings.ReplaceAll(s, "'", `'\''`) + "'")
}
