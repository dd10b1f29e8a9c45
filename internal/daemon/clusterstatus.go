package daemon

import (
	"context"
	"sort"
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
func clusterStatus(ctx context.Context, node *cluster.Manager, st store.Backend, sup *supervisor.Supervisor, s supervisor.Status) (supervisor.Status, error) {
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
	for _, r := range recs {
		if !have[r.ChatID] {
			s.Sessions = append(s.Sessions, sup.RemoteSession(r, owners[r.ChatID], pending[r.ChatID].Count))
		}
	}
	sort.Slice(s.Sessions, func(i, j int) bool { return s.Sessions[i].ChatID < s.Sessions[j].ChatID })
	now := time.Now()
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
