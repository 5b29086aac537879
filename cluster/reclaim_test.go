package cluster

import (
	"testing"
	"time"
)

// TestRogueReclaimsDeadMemberURL: a gossiper without the cluster key waits
// for a raft member to die, then reclaims its name (memberlist allows it
// after DeadNodeReclaimTime) gossiping the dead member's cluster address and
// its own URL. The name shows alive again, but the URL must not be listed:
// the cluster address does not answer, so the new incarnation is unverified.
// When the real node comes back, its URL (from its own status reply) is
// listed again.
func TestRogueReclaimsDeadMemberURL(t *testing.T) {
	nodes := newTestCluster(t, 1, 1, nil)
	v0, n1 := nodes[0], nodes[1]
	waitFor(t, 10*time.Second, "n1 URL listed", func() bool {
		m, ok := member(v0.c, "n1")
		return ok && m.PublicURL == "http://n1.example"
	})
	addr := n1.cfg.ClusterAddr
	n1.kill(t)
	waitFor(t, 10*time.Second, "n1 dead", func() bool {
		m, ok := member(v0.c, "n1")
		return ok && m.State == StateDead
	})
	time.Sleep(1500 * time.Millisecond) // DeadNodeReclaimTime (local profile)
	startRogue(t, "n1", `{"u":"https://evil.example","c":"`+addr+`","la":1,"lo":1}`, v0.cfg.GossipAddr)
	waitFor(t, 10*time.Second, "n1 alive again", func() bool {
		m, ok := member(v0.c, "n1")
		return ok && m.State == StateAlive
	})
	time.Sleep(3 * v0.c.cfg.ReconcileInterval)
	if m, _ := member(v0.c, "n1"); m.PublicURL != "" {
		t.Fatalf("v0 lists the rogue's URL for n1: %+v", m)
	}
}

// TestRestartedMemberURLListedAgain: a member's URL is dropped when it dies
// and listed again, on every node, once it restarts and is verified.
func TestRestartedMemberURLListedAgain(t *testing.T) {
	nodes := newTestCluster(t, 2, 1, nil)
	for _, n := range nodes[:2] {
		waitFor(t, 10*time.Second, "n2 URL listed on "+n.cfg.Name, func() bool {
			m, ok := member(n.c, "n2")
			return ok && m.PublicURL == "http://n2.example"
		})
	}
	n2 := nodes[2]
	n2.kill(t)
	waitFor(t, 10*time.Second, "n2 dead, no URL", func() bool {
		m, ok := member(nodes[0].c, "n2")
		return ok && m.State == StateDead && m.PublicURL == ""
	})
	time.Sleep(1500 * time.Millisecond) // DeadNodeReclaimTime (local profile)
	nodes[2] = mustStart(t, n2.cfg)
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "n2 URL listed again on "+n.cfg.Name, func() bool {
			m, ok := member(n.c, "n2")
			return ok && m.State == StateAlive && m.PublicURL == "http://n2.example"
		})
	}
}
