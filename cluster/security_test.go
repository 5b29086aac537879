package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSingleNodeApply(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	nodes := newTestCluster(t, 1, 0, func(c *Config) { c.Registerer = reg })
	c := nodes[0].c
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, idx, err := c.ApplyIndex(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if string(res) != "1" {
		t.Fatalf("result %q, want 1", res)
	}
	if err := c.WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() == "refrouter_cluster_apply_batch_commands" && mf.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Error("no apply batch observed")
		}
	}
	for _, name := range []string{"refrouter_cluster_raft_state", "refrouter_cluster_applied_index", "refrouter_cluster_members", "refrouter_cluster_apply_batch_commands"} {
		if !found[name] {
			t.Errorf("metric %s missing", name)
		}
	}
	c.SetLoad(0.75)
	waitFor(t, 5*time.Second, "load in gossip", func() bool {
		m := c.Members()
		return len(m) == 1 && m[0].Load == 0.75 && m[0].Role == RoleLeader && m[0].HasState
	})
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := c.WaitIndex(short, idx+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIndex beyond the log: %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, []byte("y")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("apply after shutdown: %v", err)
	}
}

// TestUnauthenticatedRPC: a peer that cannot prove the cluster key gets no
// service on the cluster port.
func TestUnauthenticatedRPC(t *testing.T) {
	nodes := newTestCluster(t, 1, 0, nil)
	addr := nodes[0].cfg.ClusterAddr

	readsNothing := func(t *testing.T, conn net.Conn) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(conn)
		if err == nil || errors.Is(err, io.EOF) {
			if len(b) != 0 {
				t.Fatalf("server sent %d bytes after a bad handshake", len(b))
			}
			return
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("server kept the unauthenticated connection open")
		}
	}

	tests := []struct {
		name  string
		hello func(conn net.Conn)
	}{
		{"wrong proof", func(conn net.Conn) {
			hello := make([]byte, 1+nonceLen)
			hello[0] = kindForward
			rand.Read(hello[1:])
			conn.Write(hello)
			io.ReadFull(conn, make([]byte, nonceLen+32))
			conn.Write(bytes.Repeat([]byte{7}, 32))
			// A request frame the server must never answer.
			conn.Write(encodeFrameForTest(appendCommands(nil, []command{{id: cmdID{9}, cmd: []byte("evil")}})))
		}},
		{"leave notice, wrong proof", func(conn net.Conn) {
			hello := make([]byte, 1+nonceLen)
			hello[0] = kindLeave
			rand.Read(hello[1:])
			conn.Write(hello)
			io.ReadFull(conn, make([]byte, nonceLen+32))
			conn.Write(bytes.Repeat([]byte{7}, 32))
			conn.Write(append([]byte{2}, "n0"...)) // a notice the server must never acknowledge
		}},
		{"unknown kind", func(conn net.Conn) {
			conn.Write(append([]byte{'X'}, make([]byte, nonceLen)...))
		}},
		{"raw frame", func(conn net.Conn) {
			conn.Write(encodeFrameForTest(appendCommands(nil, []command{{id: cmdID{9}, cmd: []byte("evil")}})))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tc.hello(conn)
			readsNothing(t, conn)
		})
	}
	if got := nodes[0].fsm.count("evil"); got != 0 {
		t.Fatalf("unauthenticated command applied %d times", got)
	}
	// A client with the wrong key detects the server cannot prove it either.
	if _, err := (dialer{key: []byte("nope")}).dial(addr, kindForward, time.Second); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong key dial: %v", err)
	}
}

func encodeFrameForTest(payload []byte) []byte {
	var b bytes.Buffer
	_ = writeFrame(&b, payload)
	return b.Bytes()
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	key1 := bytes.Repeat([]byte{1}, 32)
	key2 := bytes.Repeat([]byte{2}, 32)
	a := newTestConfig(t, "a", false)
	a.GossipKeys = [][]byte{key1}
	na := mustStart(t, a)
	b := newTestConfig(t, "b", false)
	b.GossipKeys = [][]byte{key2}
	nb := mustStart(t, b)
	if n, err := nb.c.ml.Join([]string{na.cfg.GossipAddr}); err == nil || n != 0 {
		t.Fatalf("join with the wrong key: n=%d err=%v", n, err)
	}
	// Rotation: b installs a's key and joins.
	if err := nb.c.InstallKey(key1); err != nil {
		t.Fatal(err)
	}
	if err := nb.c.UseKey(key1); err != nil {
		t.Fatal(err)
	}
	if err := nb.c.RemoveKey(key2); err != nil {
		t.Fatal(err)
	}
	if n, err := nb.c.ml.Join([]string{na.cfg.GossipAddr}); err != nil || n != 1 {
		t.Fatalf("join after rotation: n=%d err=%v", n, err)
	}
	waitFor(t, 5*time.Second, "both members", func() bool {
		return memberState(na.c, "b") == StateAlive && memberState(nb.c, "a") == StateAlive
	})
}

func TestMetaTooLarge(t *testing.T) {
	cfg := newTestConfig(t, "big", true)
	cfg.PublicURL = "https://" + strings.Repeat("x", 600) + ".example"
	_, err := New(cfg, &listFSM{})
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("got %v, want ErrMetaTooLarge", err)
	}
	if !strings.Contains(err.Error(), "cluster: node metadata is ") || !strings.Contains(err.Error(), "bytes, limit 512") {
		t.Fatalf("unclear error: %v", err)
	}
	cfg.PublicURL = "https://" + strings.Repeat("x", 300) + ".example"
	if _, err := New(cfg, &listFSM{}); err != nil {
		t.Fatalf("a fitting URL was refused: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := Config{Name: "n", GossipAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0", DataDir: "/tmp/x"}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"ok", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"bad gossip", func(c *Config) { c.GossipAddr = "nope" }, "GossipAddr"},
		{"bad cluster port", func(c *Config) { c.ClusterAddr = "127.0.0.1:99999" }, "ClusterAddr"},
		{"bad advertise", func(c *Config) { c.AdvertiseCluster = ":1" }, "AdvertiseCluster"},
		{"profile", func(c *Config) { c.Profile = "moon" }, "Profile"},
		{"key size", func(c *Config) { c.GossipKeys = [][]byte{make([]byte, 15)} }, "GossipKeys[0]"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bootstrap non-voter", func(c *Config) { c.BootstrapExpect = 3 }, "BootstrapExpect"},
		{"negative batch", func(c *Config) { c.MaxBatch = -1 }, "MaxBatch"},
		{"negative interval", func(c *Config) { c.ReconcileInterval = -time.Second }, "ReconcileInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			got, err := cfg.withDefaults()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Profile != ProfileLAN || got.MaxBatch != 512 || got.Logger == nil {
					t.Fatalf("defaults not applied: %+v", got)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want a ConfigError on %s", err, tc.field)
			}
		})
	}
	if _, err := New(base, nil); err == nil {
		t.Fatal("nil FSM accepted")
	}
}
