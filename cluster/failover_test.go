package cluster

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestFailover covers a 3-voter + 2-non-voter cluster: non-voters catch up,
// the leader dies abruptly and a new one takes over without losing committed
// writes, the dead node restarts from its DataDir and catches up through a
// snapshot, and a minority cannot commit.
func TestFailover(t *testing.T) {
	nodes := newTestCluster(t, 3, 2, func(c *Config) {
		c.SnapshotThreshold = 16
		c.SnapshotInterval = 100 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	leader := leaderOf(t, nodes)
	waitFor(t, 10*time.Second, "3 voters and 2 non-voters", func() bool {
		s := leader.c.Status()
		return len(s.Voters) == 3 && len(s.Nonvoters) == 2
	})

	var acked []string
	var last uint64
	apply := func(via *testNode, cmd string) {
		t.Helper()
		_, idx, err := via.c.ApplyIndex(ctx, []byte(cmd))
		if err != nil {
			t.Fatalf("apply %s via %s: %v", cmd, via.cfg.Name, err)
		}
		acked = append(acked, cmd)
		last = max(last, idx)
	}
	for i := 0; i < 40; i++ {
		apply(nodes[i%len(nodes)], "a"+strconv.Itoa(i))
	}
	for _, n := range nodes {
		if err := n.c.WaitIndex(ctx, last); err != nil {
			t.Fatalf("%s: %v", n.cfg.Name, err)
		}
		if got := n.fsm.list(); !sameList(got, acked) {
			t.Fatalf("%s has %d commands, want %d", n.cfg.Name, len(got), len(acked))
		}
	}
	for _, n := range nodes[3:] {
		if r := n.c.Status(); r.RaftState != "Follower" {
			t.Fatalf("non-voter %s in state %s", n.cfg.Name, r.RaftState)
		}
		waitFor(t, 5*time.Second, "non-voter role in gossip", func() bool {
			for _, m := range leader.c.Members() {
				if m.Name == n.cfg.Name {
					return m.Role == RoleNonvoter
				}
			}
			return false
		})
	}

	// Kill the leader: no Leave.
	old := leader
	old.kill(t)
	var survivors []*testNode
	for _, n := range nodes {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	start := time.Now()
	leader = leaderOf(t, survivors[:2]) // one of the two remaining voters
	t.Logf("new leader %s after %v", leader.cfg.Name, time.Since(start))
	for i := 0; i < 150; i++ {
		apply(survivors[len(survivors)-1-i%len(survivors)], "b"+strconv.Itoa(i))
	}
	for _, n := range survivors {
		if err := n.c.WaitIndex(ctx, last); err != nil {
			t.Fatalf("%s: %v", n.cfg.Name, err)
		}
		if got := n.fsm.list(); !sameList(got, acked) {
			t.Fatalf("%s has %d commands, want %d", n.cfg.Name, len(got), len(acked))
		}
	}

	// Restart the old leader from its data dir; the others compacted their
	// logs meanwhile, so it catches up from a snapshot.
	oldLast := old.c.raft.LastIndex()
	waitFor(t, 10*time.Second, "the leader to compact past the dead node's log", func() bool {
		first, err := leader.c.wal.FirstIndex()
		return err == nil && first > oldLast+1
	})
	back := mustStart(t, old.cfg)
	if err := back.c.WaitIndex(ctx, last); err != nil {
		t.Fatalf("restarted node: %v (status %+v)", err, back.c.Status())
	}
	if got := back.fsm.list(); !sameList(got, acked) {
		t.Fatalf("restarted node has %d commands, want %d", len(got), len(acked))
	}
	// The leader's log starts after the node's last entry (checked above), so
	// the node can only have caught up through InstallSnapshot. (raft's
	// Stats()["last_snapshot_index"] is not a reliable witness of that.)
	apply(back, "after-restart")

	// Minority: kill two of the three voters; the last cannot commit.
	voters := append(survivors[:2:2], back)
	voters[0].kill(t)
	voters[1].kill(t)
	mctx, mcancel := context.WithTimeout(ctx, 2*time.Second)
	defer mcancel()
	if _, err := voters[2].c.Apply(mctx, []byte("minority")); err == nil {
		t.Fatal("a minority committed a write")
	} else {
		t.Logf("minority apply: %v", err)
	}
	_ = fmt.Sprint()
}
