package cluster

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// logRecorder is a slog.Handler, safe for concurrent use, that keeps the
// messages logged at or above level.
type logRecorder struct {
	level slog.Level
	mu    sync.Mutex
	msgs  []string
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns how many recorded messages contain s.
func (h *logRecorder) count(s string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDeadVoterUnknownToGossipIsRemoved: a voter in the raft configuration
// that gossip never saw (it died for good while the others restarted) is
// removed after DeadServerTimeout, like a dead member.
func TestDeadVoterUnknownToGossipIsRemoved(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, func(c *Config) { c.DeadServerTimeout = time.Second })
	leader := leaderOf(t, nodes)
	waitFor(t, 10*time.Second, "3 voters", func() bool { return len(leader.c.Status().Voters) == 3 })
	if err := leader.c.raft.AddVoter("ghost", raft.ServerAddress(deadAddr(t)), 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("add ghost voter: %v", err)
	}
	if v := leader.c.Status().Voters; !slices.Contains(v, "ghost") {
		t.Fatalf("voters %v lack the ghost", v)
	}
	waitFor(t, 15*time.Second, "the ghost voter to be removed", func() bool {
		return !slices.Contains(leader.c.Status().Voters, "ghost")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodes[0].c.Apply(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if v := leader.c.Status().Voters; len(v) != 3 {
		t.Fatalf("voters %v, want the 3 live ones", v)
	}
}

// TestVoterRestartedAsNonvoterIsDemoted: a voter that comes back with
// Voter=false becomes a non-voter in the raft configuration.
func TestVoterRestartedAsNonvoterIsDemoted(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, nil)
	leader := leaderOf(t, nodes)
	waitFor(t, 10*time.Second, "3 voters", func() bool { return len(leader.c.Status().Voters) == 3 })
	var f *testNode
	for _, n := range nodes {
		if n != leader {
			f = n
			break
		}
	}
	f.kill(t)
	cfg := f.cfg
	cfg.Voter = false
	cfg.BootstrapExpect = 0
	back := mustStart(t, cfg)
	waitFor(t, 15*time.Second, "the restarted node to be demoted", func() bool {
		s := leader.c.Status()
		return len(s.Voters) == 2 && slices.Contains(s.Nonvoters, f.cfg.Name)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, idx, err := back.c.ApplyIndex(ctx, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.c.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
}

// TestBootstrapRefusesMoreVotersThanExpected: a node that sees more
// voter-capable members without raft state than BootstrapExpect does not
// bootstrap (another node may already have bootstrapped a different
// configuration) and logs the misconfiguration once.
func TestBootstrapRefusesMoreVotersThanExpected(t *testing.T) {
	var seed string
	for _, name := range []string{"b1", "b2", "b3"} {
		cfg := newTestConfig(t, name, true) // voter-capable, BootstrapExpect 0
		if seed != "" {
			cfg.Seeds = []string{seed}
		}
		n := mustStart(t, cfg)
		if seed == "" {
			seed = n.cfg.GossipAddr
		}
	}
	rec := &logRecorder{level: slog.LevelError}
	cfg := newTestConfig(t, "a0", true)
	cfg.BootstrapExpect = 3
	cfg.Seeds = []string{seed}
	cfg.Logger = slog.New(rec)
	a := mustStart(t, cfg)
	const msg = "bootstrap_expect"
	waitFor(t, 10*time.Second, "a0 to decide", func() bool {
		return rec.count(msg) > 0 || a.c.raft.LastIndex() > 0
	})
	if a.c.raft.LastIndex() > 0 {
		t.Fatalf("a0 bootstrapped with 4 voter-capable members and BootstrapExpect 3: %v", a.c.Status().Voters)
	}
	time.Sleep(4 * a.c.cfg.ReconcileInterval)
	if n := rec.count(msg); n != 1 {
		t.Fatalf("misconfiguration logged %d times, want once", n)
	}
	if a.c.raft.LastIndex() > 0 {
		t.Fatal("a0 bootstrapped later")
	}
}
