package cluster

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApply measures Apply throughput on a 3-node local cluster with
// 256 concurrent callers, half of them on followers (forwarded).
func BenchmarkApply(b *testing.B) {
	nodes := newTestCluster(b, 3, 0, nil)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, 256/testingProcs()))
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		n := nodes[i%int64(len(nodes))]
		cmd := []byte("bench-" + strconv.FormatInt(i, 10))
		for pb.Next() {
			if _, err := n.c.Apply(ctx, cmd); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cmds/s")
}

// BenchmarkFailureDetection measures, per profile, the time from an abrupt
// stop of a node until no other node lists it alive.
func BenchmarkFailureDetection(b *testing.B) {
	for _, profile := range []string{ProfileLocal, ProfileLAN} {
		b.Run(profile, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				nodes := newMembers(b, 3, profile)
				victim := nodes[2]
				start := time.Now()
				victim.kill(b)
				waitFor(b, 30*time.Second, "the dead node to be noticed", func() bool {
					for _, n := range nodes[:2] {
						if memberState(n.c, victim.cfg.Name) == StateAlive {
							return false
						}
					}
					return true
				})
				total += time.Since(start)
				for _, n := range nodes[:2] {
					_ = n.c.Shutdown(context.Background())
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "detect-ms")
		})
	}
}

// newMembers starts n gossip-only nodes (no raft group) in one profile.
func newMembers(tb testing.TB, n int, profile string) []*testNode {
	tb.Helper()
	var nodes []*testNode
	for i := 0; i < n; i++ {
		cfg := newTestConfig(tb, "m"+strconv.Itoa(i), false)
		cfg.Profile = profile
		if i > 0 {
			cfg.Seeds = []string{nodes[0].cfg.GossipAddr}
		}
		nodes = append(nodes, mustStart(tb, cfg))
	}
	waitFor(tb, 10*time.Second, "all members alive", func() bool {
		for _, nd := range nodes {
			alive := 0
			for _, m := range nd.c.Members() {
				if m.State == StateAlive {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	})
	return nodes
}
