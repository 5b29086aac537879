package cluster

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestLateVoterJoinsExistingCluster: a voter that starts later with the same
// BootstrapExpect and the lowest name must join the existing raft group, not
// bootstrap a second one.
func TestLateVoterJoinsExistingCluster(t *testing.T) {
	nodes := newTestCluster(t, 3, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := nodes[0].c.Apply(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader := leaderOf(t, nodes)
	waitFor(t, 5*time.Second, "members to advertise raft state", func() bool {
		for _, m := range leader.c.Members() {
			if !m.HasState {
				return false
			}
		}
		return true
	})
	cfg := newTestConfig(t, "a-late", true)
	cfg.BootstrapExpect = 3
	cfg.Seeds = []string{nodes[1].cfg.GossipAddr}
	late := mustStart(t, cfg)
	waitFor(t, 10*time.Second, "the late voter in the configuration", func() bool {
		s := leader.c.Status()
		return len(s.Voters) == 4 && s.Voters[0] == "a-late"
	})
	_, idx, err := late.c.ApplyIndex(ctx, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if err := late.c.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if got := late.fsm.list(); !sameList(got, []string{"before", "after"}) {
		t.Fatalf("late voter state %v", got)
	}
	if l, _ := late.c.Leader(); l != leader.cfg.Name {
		t.Fatalf("late voter follows %q, want %q", l, leader.cfg.Name)
	}
}

// blackholeAddr returns a loopback address whose listen backlog is full, so
// a TCP connect to it hangs until its timeout.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for range 4 {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // backlog full
		}
		t.Cleanup(func() { conn.Close() })
	}
	t.Fatal("could not fill the listen backlog")
	return ""
}

// TestShutdownDuringJoinHonoursContext: Shutdown returns within its ctx while
// the join loop dials seeds that never answer.
func TestShutdownDuringJoinHonoursContext(t *testing.T) {
	cfg := newTestConfig(t, "v0", true)
	cfg.Profile = ProfileLAN // 10 s memberlist TCP timeout per seed
	cfg.Seeds = []string{blackholeAddr(t), blackholeAddr(t)}
	n := mustStart(t, cfg)
	time.Sleep(300 * time.Millisecond) // the join loop is dialing
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		done <- n.c.Shutdown(ctx)
	}()
	select {
	case <-done:
	case <-time.After(6 * time.Second):
		t.Fatal("Shutdown(ctx 1s) still blocked after 6s by a join to unreachable seeds")
	}
}
