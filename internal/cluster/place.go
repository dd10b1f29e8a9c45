// Package cluster runs one dispatch node of several sharing a PostgreSQL
// database: its heartbeat, the leases on the chats it owns (each with a
// fencing token the store checks on every write for the chat), the
// placement of unowned chats over the live nodes, the wake-ups of owners
// through LISTEN/NOTIFY, the takeover of a dead node's chats and the
// roles only one node holds (webhook delivery).
//
// A single node on SQLite uses none of it.
package cluster

import (
	"cmp"
	"hash/fnv"
	"slices"
)

// Node is a live node as placement sees it.
type Node struct {
	ID string
	// MaxLive is the node's sessions.max_live (0: no cap).
	MaxLive int
	// Owned is how many chats the node holds leases on.
	Owned int
}

// Score is node's rendezvous weight for chat: the node with the highest
// score among the live ones is the chat's place, so that a node joining or
// leaving moves only the chats it wins or held.
func Score(node, chat string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(chat))
	// fnv's low bits mix poorly for short, similar keys: finish with a
	// 64-bit avalanche (splitmix64's).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Place picks chat's owner among nodes: the highest-scoring node that is
// under its max_live (by the chats it owns), or, when every node is full,
// the highest-scoring one. "" when nodes is empty. Ties (never in practice)
// go to the smaller id, so every node computes the same answer.
func Place(chat string, nodes []Node) string {
	if len(nodes) == 0 {
		return ""
	}
	ranked := slices.Clone(nodes)
	slices.SortFunc(ranked, func(a, b Node) int {
		if c := cmp.Compare(Score(b.ID, chat), Score(a.ID, chat)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	for _, n := range ranked {
		if n.MaxLive <= 0 || n.Owned < n.MaxLive {
			return n.ID
		}
	}
	return ranked[0].ID
}
