package cluster

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestAdvertiseHostName: an advertised gossip address given as a host name
// (a StatefulSet pod's DNS name, say) is resolved: the node starts and
// gossips the name's IP address.
func TestAdvertiseHostName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := newTestConfig(t, "adv", true)
	cfg.BootstrapExpect = 1
	cfg.GossipAddr = "127.0.0.1:" + strconv.Itoa(port)
	cfg.AdvertiseGossip = "localhost:" + strconv.Itoa(port)
	n := mustStart(t, cfg)
	if got := n.c.gossip; !strings.HasPrefix(got, "127.0.0.1:") && !strings.HasPrefix(got, "[::1]:") {
		t.Fatalf("advertised gossip address %q, want localhost's IP", got)
	}
}
