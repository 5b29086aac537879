//go:build !race

// The race detector makes sync.Pool drop items at random, so this test runs
// without it (make test has a pass for such tests).

package edgehttp

import (
	"bufio"
	"fmt"
	"net"
	"testing"
)

// TestIdleConnectionsHoldNoBuffers: fifty keep-alive connections, each
// answered once and left open, share a few buffers instead of holding one
// pair each; each answers again afterwards.
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	ts := startTestServer(t, Config{})
	const conns = 50
	var cs []net.Conn
	var brs []*bufio.Reader
	ask := func(i int) {
		t.Helper()
		if err := getFast(cs[i], brs[i], fmt.Sprintf("/idle%02d", i)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	for i := range conns {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs, brs = append(cs, c), append(brs, bufio.NewReader(c))
		ask(i)
	}
	for i := range conns {
		ask(i) // each idle connection still answers
	}
	st := ts.edge.Stats()
	if st.Served != 2*conns {
		t.Fatalf("served %d, want %d", st.Served, 2*conns)
	}
	// One request at a time needs one pair; a garbage collection may empty
	// the pool and cost another each time.
	if st.Buffers >= 10 {
		t.Fatalf("%d buffer pairs allocated for %d open connections served one at a time, want a few", st.Buffers, conns)
	}
}
