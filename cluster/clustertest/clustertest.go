// Package clustertest starts real in-process cluster nodes (memberlist and
// raft on 127.0.0.1) for tests of packages built on cluster.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/refrouter/refrouter/cluster"
)

// Key is the cluster key every Config uses.
var Key = []byte("clustertest-key-0123456789abcdef")

// Config returns a local-profile config on 127.0.0.1 with free ports, a
// temporary DataDir and a silent logger.
func Config(tb testing.TB, name string, voter bool) cluster.Config {
	tb.Helper()
	return cluster.Config{
		Name: name, Region: "test", PublicURL: "http://" + name + ".test",
		GossipAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0",
		Profile: cluster.ProfileLocal, ClusterKey: Key, Voter: voter,
		DataDir: tb.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Start creates and starts one node; tb.Cleanup shuts it down.
func Start(tb testing.TB, cfg cluster.Config, fsm cluster.FSM) *cluster.Cluster {
	tb.Helper()
	c, err := cluster.New(cfg, fsm)
	if err != nil {
		tb.Fatalf("clustertest: new %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatalf("clustertest: start %s: %v", cfg.Name, err)
	}
	return c
}

// StartGroup starts one voter per FSM (named n0, n1, …), bootstrapping them
// together, and waits until every node knows the leader.
func StartGroup(tb testing.TB, fsms ...cluster.FSM) []*cluster.Cluster {
	tb.Helper()
	var nodes []*cluster.Cluster
	for i, fsm := range fsms {
		cfg := Config(tb, fmt.Sprintf("n%d", i), true)
		cfg.BootstrapExpect = len(fsms)
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, Start(tb, cfg, fsm))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range nodes {
		if err := c.WaitLeader(ctx); err != nil {
			tb.Fatalf("clustertest: %s: %v", c.Name(), err)
		}
	}
	return nodes
}
