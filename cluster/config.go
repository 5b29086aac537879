package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Profiles accepted in Config.Profile.
const (
	ProfileLocal = "local"
	ProfileLAN   = "lan"
	ProfileWAN   = "wan"
)

// Config configures a Cluster. The zero value of an optional field picks the
// default documented on it. A Config is copied by New; later changes to the
// caller's value have no effect.
type Config struct {
	Name      string  // node name, unique in the cluster; also the raft server ID
	Region    string  // gossiped
	Lat, Lon  float64 // gossiped
	PublicURL string  // gossiped
	Version   string  // gossiped

	GossipAddr  string // host:port, TCP+UDP (memberlist); port 0 picks a free port
	ClusterAddr string // host:port, TCP: raft and forwarding RPC; port 0 picks a free port
	// AdvertiseGossip and AdvertiseCluster are the addresses others use; the
	// bound addresses by default.
	AdvertiseGossip, AdvertiseCluster string

	Seeds   []string // gossip addresses to join, one at a time; retried with backoff until joined or Shutdown
	Profile string   // local, lan or wan (default lan); see the package doc

	GossipKeys [][]byte // AES keys (16/24/32 bytes); the first is primary; nil disables encryption
	Label      string   // memberlist cluster label
	ClusterKey []byte   // authenticates the cluster port (raft and forwarding); nil means an empty key (insecure)
	TLS        *tls.Config
	// Dial, when set, opens every outgoing TCP connection on the cluster
	// port (raft transport, forwarding RPC) instead of a net.Dialer; TLS and the
	// cluster-key handshake still run on top. Used to route inter-node
	// traffic through latency proxies (refrouter bench cluster). Gossip
	// (memberlist) does not use it.
	Dial DialFunc

	Voter           bool // may be a raft voter
	BootstrapExpect int  // 0: never bootstrap; else the exact number of initial voters; see the package doc
	DataDir         string

	ReconcileInterval time.Duration // default 1s (local 250ms)
	DeadServerTimeout time.Duration // default 30s (local 5s)
	MaxBatch          int           // commands per raft entry or forwarding frame, default 512
	MaxBatchDelay     time.Duration // linger for a fuller batch while others are in flight, default 0 (none)
	SnapshotThreshold uint64        // default 8192 entries
	SnapshotInterval  time.Duration // default 2m
	DedupWindow       int           // command ids remembered for retries, default 65536
	ApplyTimeout      time.Duration // per attempt, on the leader's raft.Apply or a forwarded call, default 10s

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // metrics (refrouter_cluster_*); nil = not exported
}

// ConfigError names the Config field that is invalid.
type ConfigError struct {
	Field string
	Value string
	Err   error
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("cluster: config %s %q: %v", e.Field, e.Value, e.Err)
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrInvalidConfig is the cause of every ConfigError.
var ErrInvalidConfig = errors.New("cluster: invalid config")

func cfgErr(field, value, msg string) error {
	return &ConfigError{Field: field, Value: value, Err: fmt.Errorf("%s: %w", msg, ErrInvalidConfig)}
}

func checkHostPort(field, v string, required bool) error {
	if v == "" {
		if required {
			return cfgErr(field, v, "required")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return cfgErr(field, v, "not host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return cfgErr(field, v, "bad port")
	}
	if host == "" {
		return cfgErr(field, v, "missing host")
	}
	return nil
}

// withDefaults returns a validated copy of c with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, cfgErr("Name", c.Name, "required")
	}
	if len(c.Name) > 128 {
		return c, cfgErr("Name", c.Name, "longer than 128 bytes")
	}
	for _, f := range []struct {
		name, v string
		req     bool
	}{{"GossipAddr", c.GossipAddr, true}, {"ClusterAddr", c.ClusterAddr, true},
		{"AdvertiseGossip", c.AdvertiseGossip, false}, {"AdvertiseCluster", c.AdvertiseCluster, false}} {
		if err := checkHostPort(f.name, f.v, f.req); err != nil {
			return c, err
		}
	}
	switch c.Profile {
	case "":
		c.Profile = ProfileLAN
	case ProfileLocal, ProfileLAN, ProfileWAN:
	default:
		return c, cfgErr("Profile", c.Profile, "want local, lan or wan")
	}
	for i, k := range c.GossipKeys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return c, cfgErr(fmt.Sprintf("GossipKeys[%d]", i), fmt.Sprintf("%d bytes", n), "want 16, 24 or 32 bytes")
		}
	}
	if c.DataDir == "" {
		return c, cfgErr("DataDir", c.DataDir, "required")
	}
	if c.BootstrapExpect < 0 {
		return c, cfgErr("BootstrapExpect", strconv.Itoa(c.BootstrapExpect), "negative")
	}
	if c.BootstrapExpect > 0 && !c.Voter {
		return c, cfgErr("BootstrapExpect", strconv.Itoa(c.BootstrapExpect), "set on a node that is not a voter")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ReconcileInterval", c.ReconcileInterval}, {"DeadServerTimeout", c.DeadServerTimeout},
		{"MaxBatchDelay", c.MaxBatchDelay}, {"SnapshotInterval", c.SnapshotInterval}, {"ApplyTimeout", c.ApplyTimeout}} {
		if d.v < 0 {
			return c, cfgErr(d.name, d.v.String(), "negative")
		}
	}
	if c.MaxBatch < 0 {
		return c, cfgErr("MaxBatch", strconv.Itoa(c.MaxBatch), "negative")
	}
	if c.DedupWindow < 0 {
		return c, cfgErr("DedupWindow", strconv.Itoa(c.DedupWindow), "negative")
	}
	local := c.Profile == ProfileLocal
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = time.Second
		if local {
			c.ReconcileInterval = 250 * time.Millisecond
		}
	}
	if c.DeadServerTimeout == 0 {
		c.DeadServerTimeout = 30 * time.Second
		if local {
			c.DeadServerTimeout = 5 * time.Second
		}
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 2 * time.Minute
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 65536
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// memberlistConfig returns the memberlist preset of the profile.
func memberlistConfig(profile string) *memberlist.Config {
	var mc *memberlist.Config
	switch profile {
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.SuspicionMult = 2
		mc.SuspicionMaxTimeoutMult = 2
		mc.GossipInterval = 50 * time.Millisecond
		mc.PushPullInterval = time.Second
		mc.DeadNodeReclaimTime = time.Second
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
		mc.DeadNodeReclaimTime = 30 * time.Second
	default:
		mc = memberlist.DefaultLANConfig()
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 250 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 2
		mc.PushPullInterval = 10 * time.Second
		mc.DeadNodeReclaimTime = 10 * time.Second
	}
	return mc
}

// raftConfig returns the raft timing of the profile.
func raftConfig(c Config) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.Name)
	switch c.Profile {
	case ProfileLocal:
		rc.HeartbeatTimeout = 500 * time.Millisecond
		rc.ElectionTimeout = 500 * time.Millisecond
		rc.LeaderLeaseTimeout = 250 * time.Millisecond
		rc.CommitTimeout = 10 * time.Millisecond
	case ProfileWAN:
		rc.HeartbeatTimeout = 3 * time.Second
		rc.ElectionTimeout = 3 * time.Second
		rc.LeaderLeaseTimeout = 1500 * time.Millisecond
		rc.CommitTimeout = 50 * time.Millisecond
	default:
		rc.HeartbeatTimeout = time.Second
		rc.ElectionTimeout = time.Second
		rc.LeaderLeaseTimeout = 500 * time.Millisecond
		rc.CommitTimeout = 20 * time.Millisecond
	}
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	// Keep as many entries after a snapshot as between snapshots, so a
	// briefly lagging follower catches up from the log, not a snapshot.
	rc.TrailingLogs = max(c.SnapshotThreshold, 16)
	rc.MaxAppendEntries = 256
	return rc
}
