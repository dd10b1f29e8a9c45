package daemon

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dispatchd/dispatch/internal/api"
	"github.com/dispatchd/dispatch/internal/config"
	"github.com/dispatchd/dispatch/internal/netlimit"
)

// Limits of the TCP listener. Its clients may be anyone on the network, so
// none of them may hold the daemon's resources for long: at most
// maxTCPConns connections are open at once (more wait in the kernel's
// queue, costing no descriptor), headers must arrive within
// tcpHeaderTimeout, a whole request within tcpReadTimeout, an answer must be
// taken within tcpWriteTimeout, and an idle keep-alive connection is closed
// after tcpIdleTimeout. A handler that long-polls by design extends its own
// write deadline (http.ResponseController).
const (
	maxTCPConns      = 64
	tcpHeaderTimeout = 5 * time.Second
	tcpReadTimeout   = 30 * time.Second
	tcpWriteTimeout  = 30 * time.Second
	tcpIdleTimeout   = 30 * time.Second
	tcpMaxHeader     = 16 << 10
)

// listenTCP opens the optional TCP listener: the bearer tokens (read-only
// one optional), the connection cap and, when configured, TLS.
func listenTCP(c config.API, handler http.Handler, log *slog.Logger) (*http.Server, net.Listener, error) {
	tok := api.Tokens{}
	var err error
	if tok.Full, err = api.LoadToken("api.token_file", c.TokenFile); err != nil {
		return nil, nil, err
	}
	if c.MetricsTokenFile != "" {
		if tok.ReadOnly, err = api.LoadToken("api.metrics_token_file", c.MetricsTokenFile); err != nil {
			return nil, nil, err
		}
		if tok.ReadOnly == tok.Full {
			return nil, nil, fmt.Errorf("api.metrics_token_file: holds the same token as api.token_file; the read-only token must differ")
		}
	}
	var tlsCfg *tls.Config
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("api.tls_cert_file / api.tls_key_file: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("api.listen: %w", err)
	}
	ln = netlimit.Listener(ln, maxTCPConns)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{
		Handler:           api.RequireToken(tok, handler),
		ReadHeaderTimeout: tcpHeaderTimeout,
		ReadTimeout:       tcpReadTimeout,
		WriteTimeout:      tcpWriteTimeout,
		IdleTimeout:       tcpIdleTimeout,
		MaxHeaderBytes:    tcpMaxHeader,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	attrs := []any{"addr", ln.Addr().String(), "tls", tlsCfg != nil, "read_only_token", tok.ReadOnly != "", "max_connections", maxTCPConns}
	log.Info("TCP API listening (bearer token required)", attrs...)
	if tlsCfg == nil && !loopback(ln.Addr()) {
		log.Warn("the TCP API is reachable from the network without TLS: tokens and messages cross it in the clear; set api.tls_cert_file and api.tls_key_file, or listen on 127.0.0.1 behind an SSH tunnel or TLS proxy", "addr", ln.Addr().String())
	}
	return srv, ln, nil
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
