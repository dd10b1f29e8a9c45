package cluster

import (
	"fmt"
	"testing"
)

func TestPlace(t *testing.T) {
	three := []Node{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	cases := []struct {
		name  string
		chat  string
		nodes []Node
		want  string
	}{
		{"no nodes", "x", nil, ""},
		{"one node", "x", []Node{{ID: "a"}}, "a"},
		{"highest score", "x", three, best("x", "a", "b", "c")},
		{"order of the list does not matter", "x", []Node{{ID: "c"}, {ID: "a"}, {ID: "b"}}, best("x", "a", "b", "c")},
		{"full node skipped", "x", full(three, best("x", "a", "b", "c")), second("x", "a", "b", "c")},
		{"all full: the best anyway", "x", []Node{{ID: "a", MaxLive: 1, Owned: 1}, {ID: "b", MaxLive: 1, Owned: 5}}, best("x", "a", "b")},
		{"no cap is never full", "x", []Node{{ID: best("x", "a", "b"), Owned: 1000}, {ID: second("x", "a", "b")}}, best("x", "a", "b")},
	}
	for _, c := range cases {
		if got := Place(c.chat, c.nodes); got != c.want {
			t.Errorf("%s: Place(%q) = %q, want %q", c.name, c.chat, got, c.want)
		}
	}
}

// Chats spread over the nodes, and removing a node moves only its chats.
func TestPlaceSpreadAndStability(t *testing.T) {
	nodes := []Node{{ID: "node-1"}, {ID: "node-2"}, {ID: "node-3"}}
	count := map[string]int{}
	before := map[string]string{}
	for i := range 3000 {
		chat := fmt.Sprintf("chat-%d", i)
		p := Place(chat, nodes)
		count[p]++
		before[chat] = p
	}
	for _, n := range nodes {
		if count[n.ID] < 800 || count[n.ID] > 1200 {
			t.Errorf("node %s got %d of 3000 chats: %v", n.ID, count[n.ID], count)
		}
	}
	rest := nodes[:2]
	for chat, was := range before {
		now := Place(chat, rest)
		if was != "node-3" && now != was {
			t.Fatalf("chat %s moved from %s to %s though its node stayed", chat, was, now)
		}
	}
}

func ranked(chat string, ids ...string) []string {
	var ns []Node
	for _, id := range ids {
		ns = append(ns, Node{ID: id})
	}
	var out []string
	for len(ns) > 0 {
		p := Place(chat, ns)
		out = append(out, p)
		for i, n := range ns {
			if n.ID == p {
				ns = append(ns[:i], ns[i+1:]...)
				break
			}
		}
	}
	return out
}

func best(chat string, ids ...string) string   { return ranked(chat, ids...)[0] }
func second(chat string, ids ...string) string { return ranked(chat, ids...)[1] }

func full(ns []Node, id string) []Node {
	out := make([]Node, len(ns))
	copy(out, ns)
	for i := range out {
		if out[i].ID == id {
			out[i].MaxLive, out[i].Owned = 2, 2
		}
	}
	return out
}
