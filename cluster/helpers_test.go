package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// listFSM is the test FSM: an append-only list of commands.
type listFSM struct {
	mu   sync.Mutex
	cmds []string
	last uint64
}

func (f *listFSM) ApplyBatch(index uint64, at time.Time, cmds [][]byte) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, len(cmds))
	for i, c := range cmds {
		f.cmds = append(f.cmds, string(c))
		out[i] = []byte(strconv.Itoa(len(f.cmds)))
	}
	f.last = index
	return out
}

func (f *listFSM) Snapshot(w io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return json.NewEncoder(w).Encode(f.cmds)
}

func (f *listFSM) Restore(r io.Reader) error {
	var cmds []string
	if err := json.NewDecoder(r).Decode(&cmds); err != nil {
		return err
	}
	f.mu.Lock()
	f.cmds = cmds
	f.mu.Unlock()
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *listFSM) count(cmd string) int {
	n := 0
	for _, c := range f.list() {
		if c == cmd {
			n++
		}
	}
	return n
}

func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

var testClusterKey = []byte("test-cluster-key-0123456789abcdef")

// testNode is one node of a test cluster, restartable with the same config.
type testNode struct {
	cfg Config
	fsm *listFSM
	c   *Cluster
}

func newTestConfig(tb testing.TB, name string, voter bool) Config {
	tb.Helper()
	return Config{
		Name: name, Region: "test", PublicURL: "http://" + name + ".example",
		GossipAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0",
		Profile: ProfileLocal, ClusterKey: testClusterKey, Voter: voter,
		DataDir: tb.TempDir(), Logger: testLogger(),
		DeadServerTimeout: 30 * time.Second,
	}
}

// startWithFSM starts a node around fsm and registers its Shutdown as cleanup.
func startWithFSM(tb testing.TB, cfg Config, fsm FSM) *Cluster {
	tb.Helper()
	c, err := New(cfg, fsm)
	if err != nil {
		tb.Fatalf("new %s: %v", cfg.Name, err)
	}
	tb.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatalf("start %s: %v", cfg.Name, err)
	}
	return c
}

// mustStart starts a node around a listFSM and registers its Shutdown as cleanup.
func mustStart(tb testing.TB, cfg Config) *testNode {
	tb.Helper()
	n := &testNode{cfg: cfg, fsm: &listFSM{}}
	c := startWithFSM(tb, cfg, n.fsm)
	n.c = c
	// Pin the chosen ports so a restart reuses them.
	n.cfg.GossipAddr = c.GossipAddr()
	n.cfg.ClusterAddr = c.ClusterAddr()
	return n
}

// kill stops the node abruptly: no Leave, no metadata announcement.
func (n *testNode) kill(tb testing.TB) {
	tb.Helper()
	if err := n.c.stop(context.Background(), false); err != nil {
		tb.Logf("kill %s: %v", n.cfg.Name, err)
	}
}

// newTestCluster starts voters + nonvoters nodes; voters bootstrap with
// BootstrapExpect = voters. mod may adjust every config.
func newTestCluster(tb testing.TB, voters, nonvoters int, mod func(*Config)) []*testNode {
	tb.Helper()
	var nodes []*testNode
	var seed string
	for i := 0; i < voters+nonvoters; i++ {
		voter := i < voters
		prefix := "v"
		if !voter {
			prefix = "n"
		}
		cfg := newTestConfig(tb, fmt.Sprintf("%s%d", prefix, i), voter)
		if voter {
			cfg.BootstrapExpect = voters
		}
		if seed != "" {
			cfg.Seeds = []string{seed}
		}
		if mod != nil {
			mod(&cfg)
		}
		n := mustStart(tb, cfg)
		if seed == "" {
			seed = n.cfg.GossipAddr
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.cfg.Seeds = []string{seed}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.c.WaitLeader(ctx); err != nil {
			tb.Fatalf("%s: %v", n.cfg.Name, err)
		}
	}
	return nodes
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(tb testing.TB, nodes []*testNode) *testNode {
	tb.Helper()
	var found *testNode
	waitFor(tb, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.c.IsLeader() {
				found = n
				return true
			}
		}
		return false
	})
	return found
}

func sameList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func memberState(c *Cluster, name string) string {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

func statusText(s Status) string {
	var b bytes.Buffer
	_ = s.WriteText(&b)
	return b.String()
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
