package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes the report as a human-readable table: the machine, the
// figures next to their targets with PASS/FAIL, and the details behind them.
func Print(w io.Writer, rep *Report) error {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "dispatch bench — %s daemon (pid %d, dispatch %s), echo agent, HTTP over the unix socket\n",
		rep.Mode, rep.DaemonPID, rep.DaemonVersion)
	fmt.Fprintf(&b, "machine: %d cores (GOMAXPROCS %d), %s %s", m.Cores, m.GOMAXPROCS, m.GoVersion, m.OS)
	if m.Kernel != "" {
		fmt.Fprintf(&b, ", kernel %s", m.Kernel)
	}
	if m.CPU != "" {
		fmt.Fprintf(&b, ", %s", m.CPU)
	}
	if m.MemTotalMB > 0 {
		fmt.Fprintf(&b, ", %.1f GiB RAM", float64(m.MemTotalMB)/1024)
	}
	fmt.Fprintf(&b, ", load average %.2f at the start\n", m.Load)
	if m.Fsync.N > 0 {
		fs := m.FS
		if fs == "" {
			fs = "the state dir's file system"
		}
		fmt.Fprintf(&b, "fsync:   4 KiB write + fsync on %s, %d rounds: p50 %s, p99 %s, max %s (one fsync per message would cap at ~%s msg/s)\n",
			fs, m.Fsync.N, fmtMS(m.Fsync.P50), fmtMS(m.Fsync.P99), fmtMS(m.Fsync.Max), thousands(1/m.Fsync.P50.Seconds()))
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tTARGET\tRESULT")
	for _, f := range rep.Figures {
		op := "≤"
		if f.Op == ">=" {
			op = "≥"
		}
		measured, result := "—", "skipped"
		if f.Measured {
			measured = fmtValue(f.Value, f.Unit)
			result = "PASS"
			if !f.Pass {
				result = "FAIL"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\n", f.Name, measured, op, fmtValue(f.Target, f.Unit), result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	b.WriteString("\n")
	if t := rep.Throughput; t != nil {
		l := t.Latency
		fmt.Fprintf(&b, "throughput: %s accepted in %.2fs by %d clients (%d errors); accept latency p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n",
			thousands(float64(t.Accepted)), t.Elapsed.Seconds(), t.Clients, t.Errors,
			fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max))
		fmt.Fprintf(&b, "            every one done %.2fs after the start: %s msg/s end to end",
			t.AllDone.Seconds(), thousands(t.DonePerSec))
		if t.Turns >= 0 {
			fmt.Fprintf(&b, ", in %s turns over %d chats (%s turns/s)", thousands(float64(t.Turns)), t.Chats, thousands(t.TurnsPerSec))
		}
		b.WriteString("\n")
		writeCPU(&b, t.CPU)
	}
	if l := rep.Latency; l != nil {
		d, a := l.Done, l.Accept
		fmt.Fprintf(&b, "send→done:  %d sequential round trips on one chat, polling every %s (%.1f polls each): p50 %s, p90 %s, p99 %s, max %s\n",
			l.Samples, l.Poll, l.Polls, fmtMS(d.P50), fmtMS(d.P90), fmtMS(d.P99), fmtMS(d.Max))
		fmt.Fprintf(&b, "            of which the accept (POST) alone: p50 %s, p99 %s\n", fmtMS(a.P50), fmtMS(a.P99))
		writeCPU(&b, l.CPU)
	}
	if s := rep.Sessions; s != nil {
		fmt.Fprintf(&b, "sessions:   %s created in %.2fs (%s/s), all done after %.2fs",
			thousands(float64(s.Created)), s.CreateTime.Seconds(), thousands(float64(s.Created)/s.CreateTime.Seconds()), s.AllDone.Seconds())
		if s.RSSAvailable {
			fmt.Fprintf(&b, "; VmRSS %.1f → %.1f MB (+%.1f MB)", float64(s.RSSBeforeKB)/1024, float64(s.RSSAfterKB)/1024,
				float64(s.RSSAfterKB-s.RSSBeforeKB)/1024)
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "            Go heap in use %+.1f MB, goroutines %+.0f (%.2f per session)\n",
			s.HeapDeltaMB, s.GoroutinesD, s.GoroutinesD/float64(max(s.Created, 1)))
		writeCPU(&b, s.CPU)
		fmt.Fprintf(&b, "status:     %s sessions, %s KB of JSON: p50 %s, max %s over %d calls\n",
			thousands(float64(s.StatusSess)), thousands(float64(s.StatusBytes)/1024), fmtMS(s.Status.P50), fmtMS(s.Status.Max), s.Status.N)
	}
	if f := rep.Feed; f != nil {
		fmt.Fprintf(&b, "feed:       %d replies, each awaited by a long poll: visible p50 %s, p90 %s, p99 %s, max %s after the turn ended\n",
			f.Samples, fmtMS(f.Visible.P50), fmtMS(f.Visible.P90), fmtMS(f.Visible.P99), fmtMS(f.Visible.Max))
	}
	if wh := rep.Webhooks; wh != nil {
		fmt.Fprintf(&b, "webhooks:   %s replies held by the endpoint during the earlier phases, delivered in %.2fs once it answered: %s/s\n",
			thousands(float64(wh.Delivered)), wh.Elapsed.Seconds(), thousands(wh.PerSec))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	verdict := "every measured figure meets its target"
	if !rep.Passed() {
		var missed []string
		for _, f := range rep.Figures {
			if f.Measured && !f.Pass {
				missed = append(missed, f.Name)
			}
		}
		verdict = "MISSED: " + strings.Join(missed, "; ")
	}
	fmt.Fprintf(&b, "result: %s\n", verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtValue(v float64, unit string) string {
	switch unit {
	case "msg/s":
		return thousands(v) + " msg/s"
	case "/s":
		return thousands(v) + "/s"
	case "ms":
		return fmtFloatMS(v)
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

func fmtMS(d time.Duration) string { return fmtFloatMS(ms(d)) }

func fmtFloatMS(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// thousands formats v rounded to an integer with comma separators.
func thousands(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "—"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// writeCPU describes a phase's CPU use: how much the daemon needed per
// message, and whether other load competed for the cores.
func writeCPU(b *strings.Builder, u CPUUse) {
	if !u.OK {
		return
	}
	fmt.Fprintf(b, "            CPU: daemon %.2f cores (%s/msg)", u.Daemon, fmtUS(u.DaemonPerMsg))
	if u.Client > 0 {
		fmt.Fprintf(b, ", bench client %.2f cores (%s/msg)", u.Client, fmtUS(u.ClientPerMsg))
	}
	fmt.Fprintf(b, ", other processes %.2f cores; machine %.0f%% busy\n", u.Others, 100*u.Machine/float64(max(numCPU(), 1)))
}

func fmtUS(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
