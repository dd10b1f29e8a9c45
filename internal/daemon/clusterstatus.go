package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dispatchd/dispatch/internal/cluster"
	"github.com/dispatchd/dispatch/internal/store"
	"github.com/dispatchd/dispatch/internal/supervisor"
	"github.com/dispatchd/dispatch/internal/wire"
)

// clusterStatus turns a node's own status into the cluster's: each
// session with its owner (the sessions other nodes own from their saved
// records), and the nodes with their last heartbeat.
func clusterStatus(ctx context.Context, node *cluster.Manager, st store.Backend, s supervisor.Status) (supervisor.Status, error) {
	owners, err := node.Owners(ctx)
	if err != nil {
		return s, err
	}
	nodes, err := node.Nodes(ctx)
	if err != nil {
		return s, err
	}
	recs, err := st.Sessions(ctx)
	if err != nil {
		return s, err
	}
	pending, err := st.PendingStats(ctx)
	if err != nil {
		return s, err
	}
	self := node.NodeID()
	s.Daemon.Node = self
	have := map[string]bool{}
	for i := range s.Sessions {
		have[s.Sessions[i].ChatID] = true
		s.Sessions[i].Owner = owners[s.Sessions[i].ChatID]
	}
	now := time.Now()
	for _, r := range recs {
		if have[r.ChatID] {
			continue
		}
		state := "stopped"
		switch {
		case r.Failed:
			state = "failed"
		case r.Paused:
			state = "paused"
		case r.Live && owners[r.ChatID] != "":
			state = "idle" // live on its owner; the owner's status has the detail
		}
		s.Sessions = append(s.Sessions, wire.SessionStatus{
			ChatID: r.ChatID, State: state, Alive: state == "idle", Healthy: !r.Failed, HealthReason: "on node " + owners[r.ChatID],
			IdleSeconds: now.Sub(r.LastActivity).Seconds(), QueueDepth: pending[r.ChatID].Count,
			Turns: r.Turns, SessionID: r.SessionID, ExemptFlag: r.Exempt, Exempt: r.Exempt,
			LastActivity: r.LastActivity.UTC().Format(time.RFC3339), Owner: owners[r.ChatID],
		})
		if owners[r.ChatID] == "" {
			s.Sessions[len(s.Sessions)-1].HealthReason = "no owner"
		}
	}
	for _, n := range nodes {
		s.Nodes = append(s.Nodes, wire.NodeStatus{
			ID: n.ID, Self: n.ID == self, Live: n.Live, Stopped: n.Stopped,
			LastHeartbeat: n.Heartbeat.UTC().Format(time.RFC3339Nano), HeartbeatAge: now.Sub(n.Heartbeat).Seconds(),
			StartedAt: n.StartedAt.UTC().Format(time.RFC3339), Chats: n.Chats, MaxLive: n.MaxLive,
		})
	}
	return s, nil
}

// clusterMetrics registers the node's lease figures.
func clusterMetrics(reg *prometheus.Registry, node *cluster.Manager) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dispatch_cluster_leases_held", Help: "Chat leases this node holds.",
		}, func() float64 { return float64(node.Stats().Held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dispatch_cluster_leases_acquired_total", Help: "Chat leases this node took.",
		}, func() float64 { return float64(node.Stats().Acquired) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dispatch_cluster_takeovers_total", Help: "Chats this node took over from another node (or from its own earlier process).",
		}, func() float64 { return float64(node.Stats().Takeovers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "dispatch_cluster_lease_losses_total", Help: "Chat leases this node lost: taken over, or not renewed in time.",
		}, func() float64 { return float64(node.Stats().LeasesLost) }),
	)
}
