package api

import (
	"context"
	"net/http"
)

// Peer is the verdict on who opened a control-socket connection, reached
// when it was accepted.
type Peer struct {
	// Refuse, when not empty, says why requests on this connection are
	// refused (403).
	Refuse string
}

type peerKey struct{}

// WithPeer stores a connection's verdict in its context (http.Server's
// ConnContext).
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// GuardPeers wraps h so that requests on a connection with a refusing
// verdict get 403 with the reason; requests without a verdict pass.
func GuardPeers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(peerKey{}).(Peer); ok && p.Refuse != "" {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusForbidden, p.Refuse)
			return
		}
		h.ServeHTTP(w, r)
	})
}
