//go:build !race

// The race detector makes sync.Pool drop items at random, so this test runs
// without it (make test has a pass for such tests).

package edgehttp

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"
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

// TestServeConnAllocs: a keep-alive connection's requests are read, answered
// and written (deadlines included) without allocating, on the raw path and
// through net.Conn.
func TestServeConnAllocs(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(fmt.Sprintf("plain=%v", plain), func(t *testing.T) {
			ln := testListener(t, plain)
			ts := startTestServerOn(t, Config{}, ln)
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /allocs HTTP/1.1\r\nHost: x\r\n\r\n")
			const wantLen = len("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Path: fast\r\n\r\nfast /allocs")
			buf := make([]byte, 4096)
			roundTrip := func() {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				for got := 0; got < wantLen; {
					n, err := c.Read(buf[got:])
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			c.SetDeadline(time.Now().Add(time.Minute))
			roundTrip()
			// The count is of the whole process, client included; the
			// test server's Serve does not allocate.
			if allocs := testing.AllocsPerRun(1000, roundTrip); allocs != 0 {
				t.Fatalf("%v allocations per request", allocs)
			}
		})
	}
}
