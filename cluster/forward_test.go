package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// bigResultFSM answers every command with a 4 KiB result.
type bigResultFSM struct{ listFSM }

func (f *bigResultFSM) ApplyBatch(index uint64, at time.Time, cmds [][]byte) [][]byte {
	out := make([][]byte, len(cmds))
	for i := range out {
		out[i] = make([]byte, 4096)
	}
	return out
}

// floodForward writes 40 forwarding frames of 500 commands each on conn,
// never reading a reply, and closes the returned channel when it stops (all
// written, or a write failed: close conn to stop it).
func floodForward(conn net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := 0; f < 40; f++ {
			cmds := make([]command, 500)
			for i := range cmds {
				_, _ = rand.Read(cmds[i].id[:])
				cmds[i].cmd = []byte("x")
			}
			if err := writeFrame(conn, appendCommands(nil, cmds)); err != nil {
				return
			}
		}
	}()
	return done
}

// TestForwardPeerNotReadingReplies: a forwarding peer that sends commands
// but never reads the replies must neither stall the leader's writes nor
// hold up its Shutdown.
func TestForwardPeerNotReadingReplies(t *testing.T) {
	cfg := newTestConfig(t, "v0", true)
	cfg.BootstrapExpect = 1
	c := startWithFSM(t, cfg, &bigResultFSM{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leadership", c.IsLeader)

	conn, err := dialer{key: testClusterKey}.dial(c.ClusterAddr(), kindForward, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	writerDone := floodForward(conn)
	defer func() { conn.Close(); <-writerDone }()
	time.Sleep(3 * time.Second)

	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	if _, err := c.Apply(actx, []byte("local")); err != nil {
		t.Fatalf("local apply while a peer does not read replies: %v", err)
	}

	done := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		done <- c.Shutdown(sctx)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown still blocked after 10s by a peer that does not read replies")
	}
}

// TestServeForwardWriteDeadline: the leader gives up on a forwarding
// connection whose peer does not read within the write timeout, so the
// connection's goroutines end.
func TestServeForwardWriteDeadline(t *testing.T) {
	cfg := newTestConfig(t, "v0", true)
	cfg.BootstrapExpect = 1
	cfg.ApplyTimeout = time.Second
	c := startWithFSM(t, cfg, &bigResultFSM{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(t, 10*time.Second, "leadership", c.IsLeader)

	conn, err := dialer{key: testClusterKey}.dial(c.ClusterAddr(), kindForward, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	writerDone := floodForward(conn)
	defer func() { conn.Close(); <-writerDone }()
	// The leader closes the connection once a reply write times out: after
	// that, reading drains what was buffered and then ends.
	errc := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second) // let the leader's writes back up
		_, err := io.Copy(io.Discard, conn)
		errc <- err
	}()
	select {
	case err := <-errc:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the leader kept a forwarding connection whose peer does not read")
	}
}

// TestApplyCommandTooLarge: a command that cannot fit in a forwarding frame
// fails at once with ErrCommandTooLarge instead of being retried.
func TestApplyCommandTooLarge(t *testing.T) {
	nodes := newTestCluster(t, 1, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []int{maxFrameBytes, MaxCommandBytes + 1} {
		if _, err := nodes[1].c.Apply(ctx, make([]byte, n)); !errors.Is(err, ErrCommandTooLarge) {
			t.Fatalf("apply of %d bytes on a follower: %v, want ErrCommandTooLarge", n, err)
		}
	}
	if _, err := nodes[1].c.Apply(ctx, []byte("small")); err != nil {
		t.Fatal(err)
	}
}
