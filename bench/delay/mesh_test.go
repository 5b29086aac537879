package delay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func roundTrip(t *testing.T, addr string) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestMesh(t *testing.T) {
	nodes := []Node{
		{Name: "hk-1", Region: "ap-east", Addr: newEchoServer(t)},
		{Name: "hk-2", Region: "ap-east", Addr: newEchoServer(t)},
		{Name: "fra-1", Region: "eu-central", Addr: newEchoServer(t)},
	}
	rtt, err := ParseRTT("ap-east:eu-central=60ms")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMesh(nodes, rtt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Route("hk-1", nodes[1].Addr); got != nodes[1].Addr {
		t.Errorf("same region routed via %s", got)
	}
	if got := m.Route("hk-1", "127.0.0.1:1"); got != "127.0.0.1:1" {
		t.Errorf("unknown address routed via %s", got)
	}
	for _, pair := range [][2]int{{0, 2}, {2, 1}} {
		from, to := nodes[pair[0]], nodes[pair[1]]
		addr := m.Route(from.Name, to.Addr)
		if addr == to.Addr {
			t.Fatalf("%s→%s not proxied", from.Name, to.Name)
		}
		if d := roundTrip(t, addr); d < 60*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("%s→%s round trip %v, want about 60ms", from.Name, to.Name, d)
		}
	}
	if _, ok := m.Proxy("hk-1", "hk-2"); ok {
		t.Error("proxy within a region")
	}
	if len(m.proxies) != 4 {
		t.Errorf("%d proxies, want 4", len(m.proxies))
	}
}

func TestMeshInvalid(t *testing.T) {
	a := Node{Name: "a", Region: "r1", Addr: "127.0.0.1:1"}
	tests := [][]Node{
		{a, {Name: "b", Region: "r2", Addr: "127.0.0.1:2"}}, // no rtt r1:r2
		{a, {Name: "a", Region: "r1", Addr: "127.0.0.1:2"}},
		{a, {Name: "b", Region: "r1", Addr: "127.0.0.1:1"}},
		{{Name: "c"}},
	}
	for _, nodes := range tests {
		if _, err := NewMesh(nodes, nil, nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewMesh(%+v) err = %v, want ErrInvalidConfig", nodes, err)
		}
	}
}
