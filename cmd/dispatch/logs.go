package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/logging"
	"github.com/dispatchd/dispatch/internal/termsafe"
	"github.com/dispatchd/dispatch/internal/wire"
)

func logsCmd(g *globals) *cobra.Command {
	var (
		follow bool
		lines  int
	)
	cmd := &cobra.Command{
		Use:   "logs [CHAT]",
		Short: "Print the last lines of (or follow with -f) the manager log, or one session's log",
		Long: `Print the last lines of the daemon's manager log (logs/manager.log) or, given
a chat, of that chat's session log (logs/sessions/<chat>.log), which shows
the texts of its messages and replies, its turns and its lifecycle. -n sets
how many lines (default 10, like tail; 0 prints the whole file). -f prints
the last lines and then keeps printing new ones until interrupted.

Lines are escaped for the terminal: a log quotes what senders and agents
wrote. A chat the daemon has never seen is an error (exit 1).`,
		Example: `  dispatch logs
  dispatch logs alice -n 50
  dispatch logs alice -f`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeChats(g, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if lines < 0 {
				return errors.New("-n must not be negative")
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			path := logging.ManagerPath(cfg.StateDir)
			if len(args) == 1 {
				chat := args[0]
				if err := wire.ValidChatID(chat); err != nil {
					return err
				}
				path = logging.SessionPath(cfg.StateDir, chat)
				if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
					if err := noSessionLog(cmd.Context(), g, chat, filepath.Dir(path)); err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "chat %q has no log yet (%s)\n", termsafe.Line(chat), path)
					return nil
				}
			}
			return printLog(cmd.Context(), path, lines, follow, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "print the last N lines (0: all)")
	return cmd
}

// noSessionLog is nil when the daemon knows chat (it has a session that
// has logged nothing yet), else the error for an unknown chat.
func noSessionLog(ctx context.Context, g *globals, chat, dir string) error {
	if c, err := connect(g, 5*time.Second, 0); err == nil {
		defer c.Close()
		if st, err := c.Status(ctx); err == nil {
			for _, s := range st.Sessions {
				if s.ChatID == chat {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("unknown chat %q: the daemon has no session for it and there is no log for it in %s", termsafe.Line(chat), dir)
}

// printLog prints the last n lines of a log file (all when n is 0); with
// follow it keeps polling for new lines (and reopens the file when it is
// rotated) until interrupted.
func printLog(ctx context.Context, path string, n int, follow bool, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("no log at %s yet", path)
		}
		return err
	}
	defer func() { f.Close() }()
	if n > 0 {
		off, err := tailOffset(f, n)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	// Lines are escaped: a log may quote what an agent or a sender wrote.
	rd := bufio.NewReader(f)
	copyLines := func() error {
		for {
			line, err := rd.ReadString('\n')
			if line != "" {
				fmt.Fprint(out, termsafe.Text(line))
			}
			if err != nil {
				return err
			}
		}
	}
	if err := copyLines(); !errors.Is(err, io.EOF) {
		return err
	}
	if !follow {
		return nil
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		if err := copyLines(); !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		// rotated: the path now names a new, shorter file
		if st, serr := os.Stat(path); serr == nil {
			if pos, _ := f.Seek(0, io.SeekCurrent); st.Size() < pos-int64(rd.Buffered()) {
				if nf, oerr := os.Open(path); oerr == nil {
					f.Close()
					f = nf
					rd = bufio.NewReader(f)
				}
			}
		}
	}
}

// tailOffset returns where the last n lines of f begin, reading backwards
// from its end in blocks (a large log is not read whole). A last line
// without its newline counts as a line.
func tailOffset(f *os.File, n int) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := st.Size()
	const block = 32 << 10
	buf := make([]byte, block)
	newlines := 0
	for pos := end; pos > 0; {
		size := min(int64(block), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		chunk := buf[:size]
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				continue
			}
			if pos+int64(i) == end-1 {
				continue // the file's final newline ends the last line
			}
			newlines++
			if newlines == n {
				return pos + int64(i) + 1, nil
			}
		}
	}
	return 0, nil
}
