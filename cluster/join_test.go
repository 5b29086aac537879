package cluster

import (
	"context"
	"testing"
	"time"
)

// TestLateVoterJoinsExistingCluster: a voter that starts later with the same
// BootstrapExpect and the lowest name must join the existing raft group, not
// bootstrap a second one.
func TestLateVoterJoinsExistingCluster(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := nodes[0].c.Apply(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader := leaderOf(t, nodes)
	waitFor(t, 5*time.Second, "members to advertise raft state", func() bool {
		for _, m := range leader.c.Members() {
			if !m.HasState {
				return false
			}
		}
		return true
	})
	cfg := newTestConfig(t, "a-late", true)
	cfg.BootstrapExpect = 3
	cfg.Seeds = []string{nodes[1].cfg.GossipAddr}
	late := mustStart(t, cfg)
	waitFor(t, 10*time.Second, "the late voter in the configuration", func() bool {
		s := leader.c.Status()
		return len(s.Voters) == 4 && s.Voters[0] == "a-late"
	})
	_, idx, err := late.c.ApplyIndex(ctx, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if err := late.c.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if got := late.fsm.list(); !sameList(got, []string{"before", "after"}) {
		t.Fatalf("late voter state %v", got)
	}
	if l, _ := late.c.Leader(); l != leader.cfg.Name {
		t.Fatalf("late voter follows %q, want %q", l, leader.cfg.Name)
	}
}
