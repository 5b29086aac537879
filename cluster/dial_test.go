package cluster

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// countingDialer is a Config.Dial hook that counts calls per address and
// delegates to a net.Dialer.
type countingDialer struct {
	mu         sync.Mutex
	calls      map[string]int
	noDeadline int
}

func newCountingDialer() *countingDialer { return &countingDialer{calls: make(map[string]int)} }

func (d *countingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.calls[addr]++
	if _, ok := ctx.Deadline(); !ok {
		d.noDeadline++
	}
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
}

func (d *countingDialer) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[addr]
}

func (d *countingDialer) total() (n, noDeadline int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.calls {
		n += c
	}
	return n, d.noDeadline
}

// TestDialHook runs a three-voter cluster with mutual TLS whose every
// cluster-port connection goes through a counting hook: raft replication
// and forwarding must work on top of it, and both must have used it.
func TestDialHook(t *testing.T) {
	conf := selfSignedTLS(t)
	hooks := make(map[string]*countingDialer)
	nodes := newTestCluster(t, 3, 0, func(c *Config) {
		c.TLS = conf
		h := newCountingDialer()
		hooks[c.Name] = h
		c.Dial = h.dial
	})
	leader := leaderOf(t, nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	// Raft: the leader replicates to each follower over hooked connections.
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if hooks[leader.cfg.Name].count(n.cfg.ClusterAddr) == 0 {
			t.Errorf("leader %s never dialled follower %s through the hook", leader.cfg.Name, n.cfg.Name)
		}
	}
	// Forwarding: the first Apply on a follower dials the leader.
	before := hooks[follower.cfg.Name].count(leader.cfg.ClusterAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := follower.c.Apply(ctx, []byte("hooked-"+strconv.Itoa(i))); err != nil {
			t.Fatalf("apply via follower %s: %v", follower.cfg.Name, err)
		}
	}
	if after := hooks[follower.cfg.Name].count(leader.cfg.ClusterAddr); after <= before {
		t.Errorf("follower's hook dialled the leader %d times before and %d after forwarding", before, after)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.cfg.Name+" applies the forwarded commands", func() bool {
			return n.fsm.count("hooked-4") == 1
		})
		if _, noDeadline := hooks[n.cfg.Name].total(); noDeadline != 0 {
			t.Errorf("%s: %d hook calls without a deadline", n.cfg.Name, noDeadline)
		}
	}
}

// TestDialHookErrors checks that a failing hook's error is reported
// (wrapped, naming the address) and that a hook returning neither a
// connection nor an error is an error, not a panic.
func TestDialHookErrors(t *testing.T) {
	errRefused := errors.New("refused by test hook")
	d := dialer{key: testClusterKey, hook: func(context.Context, string) (net.Conn, error) { return nil, errRefused }}
	if _, err := d.dial("127.0.0.1:1", kindForward, time.Second); !errors.Is(err, errRefused) {
		t.Fatalf("dial through a failing hook: %v, want it to wrap %v", err, errRefused)
	}
	d.hook = func(context.Context, string) (net.Conn, error) { return nil, nil }
	if _, err := d.dial("127.0.0.1:1", kindForward, time.Second); err == nil {
		t.Fatal("dial through a hook returning (nil, nil) succeeded")
	}
	// A hook that honours ctx: the dial gives up at the timeout.
	d.hook = func(ctx context.Context, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := time.Now()
	if _, err := d.dial("127.0.0.1:1", kindRaft, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial through a blocking hook: %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("dial through a blocking hook took %v, timeout was 100ms", el)
	}
}
