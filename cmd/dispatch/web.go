package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/dispatchd/dispatch/internal/client"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dispatchd/dispatch/internal/web"
)

func webCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use: "web",
		Example: `  dispatch web                        # prints http://127.0.0.1:PORT/?secret=…; open it once
  dispatch web --listen 127.0.0.1:8080`,
		Short: "Serve the status page (live sessions, health, dead letters, events) in the browser",
		Long: `Serve the status page on a local address and print, alone on a line, the URL
to open: http://ADDR/?secret=…. The secret works once: the page trades it
for a session token that it keeps in the tab (sessionStorage, never a
cookie, so no other server on this host ever receives it) and sends with
every request; every request without it is refused. A reload keeps the
session; another tab or browser needs a new link (run the command again).
The page talks to the daemon through
this process and the control socket; the daemon opens no port of its own.

It listens on loopback (127.0.0.1, a free port) unless --listen says
otherwise. The page is plain HTTP: to look from another machine, prefer an
SSH tunnel (ssh -L 8080:127.0.0.1:8080 host, with --listen 127.0.0.1:8080)
over --listen on a public address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return fmt.Errorf("--listen %q: %w", listen, err)
			}
			srv, err := web.New(cfg.SocketPath())
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			defer ln.Close()
			// The address as asked for, with the port the system picked
			// (0.0.0.0 stays 0.0.0.0 rather than becoming [::]).
			addr := ln.Addr().String()
			if _, port, err := net.SplitHostPort(addr); err == nil && host != "" {
				addr = net.JoinHostPort(host, port)
			}
			stderr := cmd.ErrOrStderr()
			if !isLoopback(host) {
				fmt.Fprintf(stderr, "dispatch web: listening on %s, which is NOT loopback (--listen): anyone who can reach it sees the page's traffic in plain HTTP; the link below is the only way in\n", addr)
			}
			probe := client.ForSocket(cfg.SocketPath(), 3*time.Second)
			_, err = probe.Status(cmd.Context())
			probe.Close()
			if err != nil {
				fmt.Fprintf(stderr, "dispatch web: the daemon does not answer yet (%v); the page shows it once it does\n", err)
			}
			fmt.Fprintln(stderr, "dispatch web: open this URL (its secret works once); stop with Ctrl-C")
			fmt.Fprintln(cmd.OutOrStdout(), web.URL(addr, srv.Secret()))

			hs := &http.Server{
				Handler:           srv,
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       30 * time.Second,
				IdleTimeout:       120 * time.Second,
				MaxHeaderBytes:    64 << 10,
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			_ = hs.Close() // event streams do not end by themselves
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to serve on (host:port; port 0 picks a free one)")
	return cmd
}

// isLoopback reports whether host (of a listen address) is a loopback
// address or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
