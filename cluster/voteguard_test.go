package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestVoteGuardRefuse: an empty node holds back votes and pre-votes for
// candidates with entries beyond a bootstrap, lets a fresh cluster's first
// election through, and lets everything through once it has state.
func TestVoteGuardRefuse(t *testing.T) {
	g := newVoteGuard(nil, raft.RPCHeader{ID: []byte("v1")}, testLogger())
	ask := func(cmd any) (refused bool, granted bool) {
		resp := make(chan raft.RPCResponse, 1)
		if !g.refuse(raft.RPC{Command: cmd, RespChan: resp}) {
			return false, false
		}
		switch r := (<-resp).Response.(type) {
		case *raft.RequestVoteResponse:
			return true, r.Granted
		case *raft.RequestPreVoteResponse:
			return true, r.Granted
		}
		t.Fatalf("no response to %T", cmd)
		return
	}
	for _, tc := range []struct {
		name    string
		cmd     any
		refused bool
	}{
		{"vote, cluster with entries", &raft.RequestVoteRequest{Term: 4, LastLogIndex: 9}, true},
		{"pre-vote, cluster with entries", &raft.RequestPreVoteRequest{Term: 4, LastLogIndex: 9}, true},
		{"vote, fresh bootstrap", &raft.RequestVoteRequest{Term: 2, LastLogIndex: 1}, false},
		{"append entries", &raft.AppendEntriesRequest{Term: 4}, false},
	} {
		refused, granted := ask(tc.cmd)
		if refused != tc.refused || granted {
			t.Errorf("%s: refused %v granted %v, want refused %v", tc.name, refused, granted, tc.refused)
		}
	}
	g.empty.Store(false) // the node has state now
	if refused, _ := ask(&raft.RequestVoteRequest{Term: 5, LastLogIndex: 12}); refused {
		t.Error("a node with state still holds back votes")
	}
}

// TestWipedVoterCannotElectStaleCandidate: a voter whose data is lost comes
// back under its old name while the only other live voter is stale (it
// missed entries the cluster committed). The empty node must not help the
// stale one become leader; once the up-to-date voter is back, it leads and
// every committed entry is still there, on every node.
func TestWipedVoterCannotElectStaleCandidate(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := leaderOf(t, nodes)
	var stale, wiped *testNode
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if stale == nil {
			stale = n
		} else {
			wiped = n
		}
	}
	for i := range 5 {
		if _, err := leader.c.Apply(ctx, []byte(fmt.Sprint("early-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the stale node to apply the early entries", func() bool { return stale.fsm.count("early-4") == 1 })
	stale.kill(t)
	for i := range 5 {
		if _, err := leader.c.Apply(ctx, []byte(fmt.Sprint("late-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the other follower to apply the late entries", func() bool { return wiped.fsm.count("late-4") == 1 })
	leader.kill(t)
	wiped.kill(t)

	// The wiped node: same name and ports, empty data directory.
	wipedCfg := wiped.cfg
	wipedCfg.DataDir = t.TempDir()
	wipedCfg.BootstrapExpect = 0
	wipedCfg.Seeds = []string{stale.cfg.GossipAddr, leader.cfg.GossipAddr}
	staleCfg := stale.cfg
	staleCfg.Seeds = []string{wipedCfg.GossipAddr, leader.cfg.GossipAddr}
	back := []*testNode{mustStart(t, staleCfg), mustStart(t, wipedCfg)}
	time.Sleep(4 * time.Second) // several election timeouts of the local profile
	for _, n := range back {
		if n.c.IsLeader() {
			t.Fatalf("%s became leader with the wiped node's vote: the late entries are lost (stale fsm has late-4: %d)",
				n.cfg.Name, n.fsm.count("late-4"))
		}
	}

	leaderCfg := leader.cfg
	leaderCfg.Seeds = []string{staleCfg.GossipAddr, wipedCfg.GossipAddr}
	back = append(back, mustStart(t, leaderCfg))
	newLeader := leaderOf(t, back)
	if _, err := newLeader.c.Apply(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for _, n := range back {
		waitFor(t, 20*time.Second, n.cfg.Name+" to hold every committed entry", func() bool {
			return n.fsm.count("late-4") == 1 && n.fsm.count("early-0") == 1 && n.fsm.count("after") == 1
		})
	}
}
