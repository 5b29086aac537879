// Package localcluster starts several refrouter nodes on 127.0.0.1 in one
// process: the three-region demo (`refrouter demo`, `make run`), the
// simulated regions of `refrouter bench cluster`, and integration tests.
package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/refrouter/refrouter/cluster"
	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/node"
	"gopkg.in/yaml.v3"
)

// Site is one node of a local cluster: where it pretends to be.
type Site struct {
	Name     string
	Region   string
	Lat, Lon float64
}

// DemoSites are the three regions of the demo: Hong Kong, Frankfurt, Virginia.
var DemoSites = []Site{
	{Name: "hk-1", Region: "ap-east", Lat: 22.32, Lon: 114.17},
	{Name: "fra-1", Region: "eu-central", Lat: 50.11, Lon: 8.68},
	{Name: "iad-1", Region: "us-east", Lat: 38.95, Lon: -77.45},
}

// Options say how to lay out a local cluster.
type Options struct {
	Sites    []Site
	DataDir  string // one subdirectory per node; required
	BasePort int    // HTTP base+1.., gossip base+n+1.., cluster base+2n+1..
	GeoIP    []string
	DSN      string
	Profile  string // default "local"
	Logger   *slog.Logger
	Version  string
	// Edit, when set, may change each node's configuration before it starts.
	Edit func(i int, cfg *config.Config)
	// Dial, when set, gives the cluster-port dialer of the node named from
	// (node.Options.Dial), e.g. to route inter-node traffic through the
	// latency proxies of bench/delay; nil or a nil result: direct TCP.
	Dial func(from string) cluster.DialFunc
}

// Secrets are the cluster-wide keys and tokens of a local cluster, kept in
// the data dir so that a restarted cluster verifies its old links.
type Secrets struct {
	AdminToken    string `json:"admin_token"`
	PlatformToken string `json:"platform_token"`
	GossipKey     string `json:"gossip_key"`
	ClusterKey    string `json:"cluster_key"`
	LinkKey       string `json:"link_key"`
}

// LoadSecrets reads the secrets kept in dir, or makes and keeps new ones.
func LoadSecrets(dir string) (Secrets, error) {
	path := filepath.Join(dir, "secrets.json")
	var s Secrets
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("read %s: %w", path, err)
		}
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("read %s: %w", path, err)
	}
	s = Secrets{
		AdminToken:    "adm_" + randomToken(18),
		PlatformToken: "plt_" + randomToken(18),
		GossipKey:     base64.StdEncoding.EncodeToString(randomBytes(32)),
		ClusterKey:    base64.StdEncoding.EncodeToString(randomBytes(32)),
		LinkKey:       base64.StdEncoding.EncodeToString(randomBytes(32)),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, fmt.Errorf("create %s: %w", dir, err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return s, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return s, fmt.Errorf("write %s: %w", path, err)
	}
	return s, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on Linux
	}
	return b
}

func randomToken(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }

// Configs returns the node configurations of the cluster.
func Configs(o Options, s Secrets) []config.Config {
	n := len(o.Sites)
	profile := o.Profile
	if profile == "" {
		profile = "local"
	}
	var seeds []string
	for i := range o.Sites {
		seeds = append(seeds, "127.0.0.1:"+strconv.Itoa(o.BasePort+n+1+i))
	}
	out := make([]config.Config, n)
	for i, site := range o.Sites {
		c := config.Default()
		c.Name, c.Region, c.Lat, c.Lon = site.Name, site.Region, site.Lat, site.Lon
		c.Listen = "127.0.0.1:" + strconv.Itoa(o.BasePort+1+i)
		c.PublicURL = "http://" + c.Listen
		c.Gossip = "127.0.0.1:" + strconv.Itoa(o.BasePort+n+1+i)
		c.Cluster = "127.0.0.1:" + strconv.Itoa(o.BasePort+2*n+1+i)
		c.Seeds = seeds
		c.Profile = profile
		c.Voter = i < 5
		c.BootstrapExpect = min(n, 5)
		c.DataDir = filepath.Join(o.DataDir, site.Name)
		c.Tokens = []config.Token{{Token: s.AdminToken, Role: config.RoleAdmin}, {Token: s.PlatformToken, Role: config.RolePlatform}}
		c.GossipKey = s.GossipKey
		c.ClusterKey = s.ClusterKey
		c.Secrets = []config.Secret{{Gen: 1, Key: s.LinkKey}}
		c.GeoIP = o.GeoIP
		c.TrustedProxies = []string{"127.0.0.0/8", "::1/128"}
		c.DSN = o.DSN
		c.Migrate = o.DSN != "" && i == 0
		if o.Edit != nil {
			o.Edit(i, &c)
		}
		out[i] = c
	}
	return out
}

// WriteConfigs writes each configuration as DIR/<name>.yaml.
func WriteConfigs(dir string, cfgs []config.Config) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var paths []string
	for _, c := range cfgs {
		b, err := yaml.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encode config of %s: %w", c.Name, err)
		}
		p := filepath.Join(dir, c.Name+".yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Cluster is a running local cluster.
type Cluster struct {
	Nodes   []*node.Node
	Configs []config.Config
	Secrets Secrets
}

// Start starts every node of the cluster and waits until all are ready or ctx
// is done. On error the nodes already started are shut down.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.DataDir == "" {
		return nil, errors.New("localcluster: DataDir is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s, err := LoadSecrets(o.DataDir)
	if err != nil {
		return nil, err
	}
	cfgs := Configs(o, s)
	for _, c := range cfgs {
		if err := portFree(c.Listen); err != nil {
			return nil, err
		}
	}
	lc := &Cluster{Configs: cfgs, Secrets: s}
	for _, c := range cfgs {
		var dial cluster.DialFunc
		if o.Dial != nil {
			dial = o.Dial(c.Name)
		}
		n, err := node.New(c, node.Options{Logger: o.Logger, Version: o.Version, Dial: dial})
		if err != nil {
			lc.Shutdown(context.Background())
			return nil, fmt.Errorf("node %s: %w", c.Name, err)
		}
		if err := n.Start(ctx); err != nil {
			lc.Shutdown(context.Background())
			return nil, fmt.Errorf("start node %s: %w", c.Name, err)
		}
		lc.Nodes = append(lc.Nodes, n)
	}
	for _, n := range lc.Nodes {
		if err := n.WaitReady(ctx); err != nil {
			lc.Shutdown(context.Background())
			return nil, err
		}
	}
	return lc, nil
}

func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("port of %s is taken (try another --base-port): %w", addr, err)
	}
	return ln.Close()
}

// Shutdown stops every node, in reverse order. First it tells every node's
// cluster layer to log the libraries' errors at debug level: the whole
// cluster is going down, so the nodes' reports of peers already gone are
// expected.
func (c *Cluster) Shutdown(ctx context.Context) error {
	for _, n := range c.Nodes {
		n.Cluster().QuietLibraryErrors()
	}
	var errs []error
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := c.Nodes[i].Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}
