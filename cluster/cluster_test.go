package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestThreeNodes(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, nil)
	leader := leaderOf(t, nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	sub, unsub := nodes[0].c.Subscribe()
	defer unsub()

	// Apply on a follower: forwarded, applied on all three.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var maxIdx uint64
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, idx, err := follower.c.ApplyIndex(ctx, []byte(fmt.Sprintf("cmd-%d", i)))
			if err != nil {
				errs <- err
				return
			}
			if len(res) == 0 || idx == 0 {
				errs <- fmt.Errorf("cmd-%d: empty result %q or index %d", i, res, idx)
			}
			mu.Lock()
			maxIdx = max(maxIdx, idx)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if err := nd.c.WaitIndex(ctx, maxIdx); err != nil {
			t.Fatalf("%s: %v", nd.cfg.Name, err)
		}
	}
	want := leader.fsm.list()
	if len(want) != n {
		t.Fatalf("leader applied %d commands, want %d", len(want), n)
	}
	for _, nd := range nodes {
		if got := nd.fsm.list(); !sameList(got, want) {
			t.Fatalf("%s diverged: %d commands vs %d", nd.cfg.Name, len(got), len(want))
		}
	}

	t.Run("DuplicateIDAppliedOnce", func(t *testing.T) {
		id := cmdID{1, 2, 3}
		var wg sync.WaitGroup
		outs := make([]outcome, 4)
		oerrs := make([]error, 4)
		for i := range outs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				outs[i], oerrs[i] = follower.c.applyID(ctx, id, []byte("dup"))
			}(i)
		}
		wg.Wait()
		again, err := follower.c.applyID(ctx, id, []byte("dup"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range outs {
			if oerrs[i] != nil {
				t.Fatal(oerrs[i])
			}
			if outs[i].index != again.index || string(outs[i].result) != string(again.result) {
				t.Fatalf("retry %d got index %d result %q, first got %d %q", i, outs[i].index, outs[i].result, again.index, again.result)
			}
		}
		for _, nd := range nodes {
			if err := nd.c.WaitIndex(ctx, again.index); err != nil {
				t.Fatal(err)
			}
			if c := nd.fsm.count("dup"); c != 1 {
				t.Fatalf("%s applied the duplicate %d times", nd.cfg.Name, c)
			}
		}
	})

	t.Run("Counters", func(t *testing.T) {
		for i, nd := range nodes {
			if err := nd.c.Counters().Add("clicks", uint64(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, "counters to converge", func() bool {
			for _, nd := range nodes {
				if nd.c.Counters().Total("clicks") != 6 {
					return false
				}
			}
			return true
		})
	})

	t.Run("Status", func(t *testing.T) {
		s := leader.c.Status()
		if len(s.Voters) != 3 || s.Leader != leader.cfg.Name || s.RaftState != "Leader" || s.Term == 0 {
			t.Fatalf("status %+v", s)
		}
		if len(s.Members) != 3 || s.Members[0].PublicURL == "" || s.Members[0].ClusterAddr == "" {
			t.Fatalf("members %+v", s.Members)
		}
		txt := statusText(s)
		for _, nd := range nodes {
			if !strings.Contains(txt, nd.cfg.Name) {
				t.Fatalf("text status lacks %s:\n%s", nd.cfg.Name, txt)
			}
		}
		remote, err := FetchStatus(ctx, follower.cfg.ClusterAddr, testClusterKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		if remote.Name != follower.cfg.Name || remote.Leader != leader.cfg.Name {
			t.Fatalf("remote status %+v", remote)
		}
		b, _ := json.Marshal(remote)
		if !strings.Contains(string(b), `"raft_state":"Follower"`) {
			t.Fatalf("json %s", b)
		}
		if _, err := FetchStatus(ctx, follower.cfg.ClusterAddr, []byte("wrong"), nil); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("wrong key: %v", err)
		}
	})

	t.Run("GracefulLeave", func(t *testing.T) {
		for len(sub) > 0 {
			<-sub
		}
		start := time.Now()
		if err := follower.c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, "others to see the leave", func() bool {
			for _, nd := range nodes {
				if nd != follower && memberState(nd.c, follower.cfg.Name) != StateLeft {
					return false
				}
			}
			return true
		})
		t.Logf("leave seen by every peer after %v", time.Since(start))
		select {
		case <-sub:
		default:
			t.Error("no membership notification")
		}
		waitFor(t, 5*time.Second, "the leader to remove the departed voter", func() bool {
			return len(leader.c.Status().Voters) == 2
		})
		if err := follower.c.Shutdown(context.Background()); err != nil {
			t.Fatalf("second shutdown: %v", err)
		}
	})
}
