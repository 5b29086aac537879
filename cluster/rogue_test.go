package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// badMetas are gossiped metadata a node must not trust, each with the
// reason; goodMetas must be accepted as they are.
var badMetas = []struct{ why, json string }{
	{"header injection in URL", `{"la":-23.55,"lo":-46.63,"u":"https://evil.example\r\nSet-Cookie: a=b","c":"127.0.0.1:1","v":true}`},
	{"space in URL", `{"u":"https://evil.example/a b"}`},
	{"non-ASCII URL", `{"u":"https://évil.example"}`},
	{"javascript URL", `{"u":"javascript:alert(1)"}`},
	{"ftp URL", `{"u":"ftp://evil.example"}`},
	{"relative URL", `{"u":"//evil.example"}`},
	{"userinfo", `{"u":"https://user:pw@evil.example"}`},
	{"userinfo host confusion", `{"u":"https://good.example@evil.example"}`},
	{"query", `{"u":"https://evil.example/?a=b"}`},
	{"empty query", `{"u":"https://evil.example?"}`},
	{"fragment", `{"u":"https://evil.example/#x"}`},
	{"backslash", `{"u":"https://evil.example\\@good.example"}`},
	{"no host", `{"u":"https:///path"}`},
	{"port 0", `{"u":"https://evil.example:0"}`},
	{"port too large", `{"u":"https://evil.example:65536"}`},
	{"port not numeric", `{"u":"https://evil.example:http"}`},
	{"empty port", `{"u":"https://evil.example:"}`},
	{"bad escape", `{"u":"https://evil.example/%zz"}`},
	{"angle brackets", `{"u":"https://evil.example/<script>"}`},
	{"IPv6 zone", `{"u":"http://[fe80::1%25eth0]:80"}`},
	{"cluster addr without port", `{"c":"127.0.0.1"}`},
	{"cluster addr port 0", `{"c":"127.0.0.1:0"}`},
	{"cluster addr bad port", `{"c":"127.0.0.1:99999"}`},
	{"cluster addr no host", `{"c":":8300"}`},
	{"cluster addr control char", `{"c":"host\n:8300"}`},
	{"cluster addr path", `{"c":"host/x:8300"}`},
	{"latitude", `{"la":91}`},
	{"longitude", `{"lo":-180.5}`},
	{"huge latitude", `{"la":1e308}`},
	{"control char in region", `{"r":"eu\u0000"}`},
	{"long version", `{"ve":"` + strings.Repeat("v", 65) + `"}`},
	{"role with newline", `{"ro":"leader\n"}`},
}

var goodMetas = []string{
	`{}`,
	`{"u":"http://127.0.0.1:8082","c":"127.0.0.1:8300","v":true}`,
	`{"u":"HTTPS://Fra.Example/r/x-y_z~.%2F;a=b","c":"fra-1.internal:8300"}`,
	`{"u":"http://[::1]:8080","c":"[::1]:8300","la":-90,"lo":180,"r":"são-paulo"}`,
	`{"u":"https://fra.example/","ro":"nonvoter","ve":"v1.2.3"}`,
}

// TestDecodeMetaRejectsBadValues: metadata with an unacceptable value is
// rejected as a whole: the member is left with no URL, no cluster address
// and no voter flag.
func TestDecodeMetaRejectsBadValues(t *testing.T) {
	for _, tc := range badMetas {
		m, _, err := decodeMeta("evil-1", []byte(tc.json))
		if err == nil || !errors.Is(err, ErrBadMeta) {
			t.Errorf("%s: %s accepted (err %v)", tc.why, tc.json, err)
		}
		if m != (Meta{Name: "evil-1"}) {
			t.Errorf("%s: kept metadata %+v", tc.why, m)
		}
	}
	for _, js := range goodMetas {
		if _, _, err := decodeMeta("good", []byte(js)); err != nil {
			t.Errorf("%s refused: %v", js, err)
		}
	}
	if _, _, err := decodeMeta("bad\r\nname", []byte(`{}`)); !errors.Is(err, ErrBadMeta) {
		t.Errorf("name with CR LF accepted: %v", err)
	}
	// The leaving flag survives bad metadata: it only turns dead into left.
	if _, leaving, _ := decodeMeta("x", []byte(`{"la":1000,"x":true}`)); !leaving {
		t.Error("leaving flag of bad metadata lost")
	}
}

// TestNewRefusesMetaPeersWouldReject: a node's own metadata must pass the
// check its peers apply.
func TestNewRefusesMetaPeersWouldReject(t *testing.T) {
	for field, mod := range map[string]func(*Config){
		"PublicURL": func(c *Config) { c.PublicURL = "https://u:p@x.example" },
		"Region":    func(c *Config) { c.Region = "eu\n" },
		"Lat":       func(c *Config) { c.Lat = 100 },
	} {
		cfg := newTestConfig(t, "n", true)
		mod(&cfg)
		_, err := New(cfg, &listFSM{})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != field || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

// rogueDelegate gossips fixed metadata and nothing else.
type rogueDelegate struct{ meta []byte }

func (d rogueDelegate) NodeMeta(limit int) []byte         { return d.meta }
func (rogueDelegate) NotifyMsg([]byte)                    {}
func (rogueDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (rogueDelegate) LocalState(bool) []byte              { return nil }
func (rogueDelegate) MergeRemoteState(buf []byte, _ bool) {}

// startRogue runs a plain memberlist node, knowing nothing of the cluster
// key, that gossips meta under name and joins seed.
func startRogue(t *testing.T, name, meta, seed string) {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.AdvertisePort = 0
	mc.LogOutput = io.Discard
	mc.Delegate = rogueDelegate{[]byte(meta)}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{seed}); err != nil {
		t.Fatalf("rogue %s join: %v", name, err)
	}
}

func member(c *Cluster, name string) (Member, bool) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// TestRogueGossipMetaIsNotTrusted: a memberlist node without the cluster
// key gossiping the metadata of the security report (a URL with CR LF, a
// dead cluster address, voter) joins a one-voter cluster. Its URL must not
// be listed and it must not become a raft server, which would leave the
// cluster with two voters, one dead: leaderless.
func TestRogueGossipMetaIsNotTrusted(t *testing.T) {
	nodes := newTestCluster(t, 1, 0, nil)
	v0 := nodes[0].c
	startRogue(t, "evil-1", badMetas[0].json, nodes[0].cfg.GossipAddr)
	waitFor(t, 5*time.Second, "evil-1 alive in gossip", func() bool {
		m, ok := member(v0, "evil-1")
		return ok && m.State == StateAlive
	})
	for range 8 { // a couple of reconciles each time
		time.Sleep(v0.cfg.ReconcileInterval)
		m, _ := member(v0, "evil-1")
		if m.PublicURL != "" || m.ClusterAddr != "" || m.Voter || m.Lat != 0 {
			t.Fatalf("rogue metadata listed: %+v", m)
		}
		s := v0.Status()
		if slices.Contains(s.Voters, "evil-1") || slices.Contains(s.Nonvoters, "evil-1") {
			t.Fatalf("rogue is a raft server: voters %v nonvoters %v", s.Voters, s.Nonvoters)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := v0.Apply(ctx, []byte("still a leader")); err != nil {
		t.Fatal(err)
	}
}

// TestRogueWithWellFormedMetaIsNotAdded: rogues without the cluster key
// gossip acceptable-looking metadata: a voter at a dead cluster address,
// and a non-voter claiming a real node's cluster address (which answers
// with the real node's name). Over mutual TLS, neither becomes a raft
// server nor has its URL listed; a legitimate voter and a legitimate
// non-voter that join afterwards are still added, and each rogue is
// logged once.
func TestRogueWithWellFormedMetaIsNotAdded(t *testing.T) {
	conf := selfSignedTLS(t)
	rec := &logRecorder{level: slog.LevelWarn}
	nodes := newTestCluster(t, 3, 0, func(c *Config) {
		c.TLS = conf
		c.Logger = slog.New(rec)
	})
	leader := leaderOf(t, nodes)
	seed := nodes[0].cfg.GossipAddr
	startRogue(t, "evil-2", `{"u":"https://evil.example","c":"`+deadAddr(t)+`","v":true,"la":1,"lo":1}`, seed)
	startRogue(t, "evil-3", `{"u":"https://evil.example/x","c":"`+nodes[1].cfg.ClusterAddr+`"}`, seed)
	waitFor(t, 5*time.Second, "rogues alive in gossip", func() bool {
		m2, ok2 := member(leader.c, "evil-2")
		m3, ok3 := member(leader.c, "evil-3")
		return ok2 && ok3 && m2.State == StateAlive && m3.State == StateAlive && m2.ClusterAddr != "" && m3.ClusterAddr != ""
	})
	noRogueServers := func() {
		t.Helper()
		for _, n := range nodes {
			s := n.c.Status()
			for _, id := range append(s.Voters, s.Nonvoters...) {
				if strings.HasPrefix(id, "evil") {
					t.Fatalf("%s: rogue is a raft server: voters %v nonvoters %v", n.cfg.Name, s.Voters, s.Nonvoters)
				}
			}
		}
	}
	for range 8 {
		time.Sleep(leader.c.cfg.ReconcileInterval)
		noRogueServers()
	}

	late := newTestConfig(t, "v3", true)
	late.TLS, late.Seeds = conf, []string{seed}
	mustStart(t, late)
	nv := newTestConfig(t, "n4", false)
	nv.TLS, nv.Seeds = conf, []string{seed}
	mustStart(t, nv)
	waitFor(t, 15*time.Second, "v3 a voter and n4 a non-voter", func() bool {
		s := leader.c.Status()
		return slices.Contains(s.Voters, "v3") && slices.Contains(s.Nonvoters, "n4")
	})
	time.Sleep(3 * time.Second) // retries of the rogues' checks
	noRogueServers()
	for _, n := range nodes {
		s := n.c.Status()
		if len(s.Voters) != 4 || len(s.Nonvoters) != 1 {
			t.Fatalf("%s: voters %v nonvoters %v", n.cfg.Name, s.Voters, s.Nonvoters)
		}
		for _, m := range s.Members {
			if strings.HasPrefix(m.Name, "evil") && m.PublicURL != "" {
				t.Fatalf("%s lists the rogue's URL: %+v", n.cfg.Name, m)
			}
			if !strings.HasPrefix(m.Name, "evil") && m.PublicURL == "" {
				t.Fatalf("%s lists no URL for %s", n.cfg.Name, m.Name)
			}
		}
	}
	if n := rec.count("did not prove its identity"); n != 2 {
		t.Fatalf("rogues logged %d times, want once each", n)
	}
}

// TestRogueCannotBlockOrJoinBootstrap: a rogue with the lowest name,
// claiming to be voter-capable (and to have raft state), is present before
// the second of two BootstrapExpect=2 nodes arrives. The two must still
// bootstrap, with each other only.
func TestRogueCannotBlockOrJoinBootstrap(t *testing.T) {
	cfg := newTestConfig(t, "b1", true)
	cfg.BootstrapExpect = 2
	b1 := mustStart(t, cfg)
	startRogue(t, "a-evil", `{"u":"https://evil.example","c":"`+deadAddr(t)+`","v":true,"s":true}`, b1.cfg.GossipAddr)
	waitFor(t, 5*time.Second, "a-evil alive in gossip", func() bool {
		m, ok := member(b1.c, "a-evil")
		return ok && m.State == StateAlive && m.ClusterAddr != ""
	})
	time.Sleep(2 * b1.c.cfg.ReconcileInterval) // b1's bootstrap loop sees it
	cfg2 := newTestConfig(t, "b2", true)
	cfg2.BootstrapExpect = 2
	cfg2.Seeds = []string{b1.cfg.GossipAddr}
	b2 := mustStart(t, cfg2)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b1.c.WaitLeader(ctx); err != nil {
		t.Fatalf("no leader: %v (status %+v)", err, b1.c.Status())
	}
	if err := b2.c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if v := b1.c.Status().Voters; !sameList(v, []string{"b1", "b2"}) {
		t.Fatalf("voters %v", v)
	}
}
