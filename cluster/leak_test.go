package cluster

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestShutdownLeavesNoGoroutines starts and stops a two-node cluster with
// forwarding traffic and checks that every goroutine is gone afterwards.
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		nodes := newTestCluster(t, 1, 1, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i < 10; i++ {
			if _, err := nodes[1].c.Apply(ctx, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range nodes {
			if err := n.c.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown %s: %v", n.cfg.Name, err)
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var ours []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "hashicorp") || strings.Contains(g, "refrouter") {
				ours = append(ours, g)
			}
		}
		t.Fatalf("%d goroutines before, %d after shutdown:\n%s", before, n, strings.Join(ours, "\n\n"))
	}
}
