package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/refrouter/refrouter/bench"
	"github.com/refrouter/refrouter/bench/delay"
	"github.com/refrouter/refrouter/bench/loadgen"
	"github.com/refrouter/refrouter/bench/scenario"
	"github.com/refrouter/refrouter/cluster"
	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/refrouter/refrouter/node/localcluster"
	"github.com/spf13/cobra"
)

// defaultClusterRTT is the RTT between the demo regions that bench cluster
// simulates unless told otherwise (Hong Kong, Frankfurt, Virginia).
const defaultClusterRTT = "ap-east:eu-central=180ms,ap-east:us-east=200ms,eu-central:us-east=80ms"

// clusterScenarios are the scenarios bench cluster can run, in run order.
var clusterScenarios = []string{"redirect", "register", "funnel"}

// clusterBench holds the flags of `refrouter bench cluster`.
type clusterBench struct {
	f         benchFlags
	rtt       string
	scenarios string
	basePort  int
	profile   string
	logLevel  string
}

func benchClusterCmd() *cobra.Command {
	b := &clusterBench{}
	cmd := &cobra.Command{
		Use:   "cluster [--rtt A:B=180ms,...] [--scenario redirect|register|funnel] [--wait 2s]",
		Short: "Start a simulated three-region cluster in-process and load each region's node from a client in that region",
		Long: `bench cluster starts hk-1 (ap-east), fra-1 (eu-central) and iad-1 (us-east) on
127.0.0.1 in this process. Every connection one node opens to another node's
cluster port (raft replication and the forwarding of registrations to the
leader) goes through a delaying proxy that adds the RTT given by --rtt between
their regions (bench/delay). Not delayed: gossip (memberlist UDP, and its TCP
push-pull, which do not use the cluster port) and the client→node hop, since
the client of each region is local to its node.

Setup (campaign, share links) runs with the delays at zero; the delays are
switched on before the first measured request. Then each scenario runs against
each region's node in turn (--rate, --duration and --warmup apply per region):
redirect latency never crosses the network (invariant I5); register with
--wait gives the decision latency, which includes the forward to the leader and
the leader's commit over the simulated RTTs. The leader is whichever node won
the election; it is printed (on stderr with --json).

--scenario takes one scenario or a comma-separated list (e.g. redirect,register)
run on the same cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return b.run(cmd) },
	}
	b.f.add(cmd)
	fl := cmd.Flags()
	// A follower region's decision takes a few RTTs (forward, commit, the
	// commit index back to its replica): at 200/s and 400 ms that is 80
	// requests in flight, more than bench's default 64 connections.
	if c := fl.Lookup("connections"); c != nil {
		_ = c.Value.Set("256")
		c.DefValue = "256"
	}
	fl.StringVar(&b.rtt, "rtt", defaultClusterRTT, "round-trip times between regions, regionA:regionB=duration,...")
	fl.StringVar(&b.scenarios, "scenario", "redirect", "redirect, register or funnel (or a comma-separated list)")
	fl.IntVar(&b.basePort, "base-port", 0, "HTTP on base+1..base+3, gossip base+4..6, cluster base+7..9 (0: pick free ports)")
	fl.StringVar(&b.profile, "profile", "lan", "cluster timing profile: local, lan or wan (lan keeps the raft lease well above the simulated RTTs)")
	fl.StringVar(&b.logLevel, "log-level", "error", "node log level: debug, info, warn or error (to stderr)")
	return cmd
}

// parseClusterScenarios validates a comma-separated list of scenarios and
// returns them in run order, without duplicates.
func parseClusterScenarios(spec string) ([]string, error) {
	want := make(map[string]bool)
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(clusterScenarios, s) {
			return nil, fmt.Errorf("--scenario %q: want %s", s, strings.Join(clusterScenarios, ", "))
		}
		want[s] = true
	}
	var out []string
	for _, s := range clusterScenarios {
		if want[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--scenario: no scenario given")
	}
	return out, nil
}

func (b *clusterBench) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	f := &b.f
	if len(f.targets) > 0 {
		return errors.New("--target is not used by bench cluster: it loads the nodes it starts")
	}
	if f.codesFile != "" {
		return errors.New("--codes is not used by bench cluster: links are issued on the cluster it starts")
	}
	scenarios, err := parseClusterScenarios(b.scenarios)
	if err != nil {
		return err
	}
	rtt, err := delay.ParseRTT(b.rtt)
	if err != nil {
		return fmt.Errorf("--rtt: %w", err)
	}
	sites := localcluster.DemoSites
	for i, a := range sites {
		for _, c := range sites[i+1:] {
			if _, ok := rtt[[2]string{a.Region, c.Region}]; !ok {
				return fmt.Errorf("--rtt: no rtt between regions %s and %s", a.Region, c.Region)
			}
		}
	}
	if f.rate <= 0 || f.duration <= 0 || f.connections <= 0 || f.warmup < 0 {
		return fmt.Errorf("--rate, --duration and --connections must be positive and --warmup not negative")
	}
	ips, err := f.clientIPs()
	if err != nil {
		return err
	}
	var level slog.LevelVar
	if err := level.UnmarshalText([]byte(b.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", b.logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: &level}))

	dir, err := os.MkdirTemp("", "refrouter-bench-cluster-")
	if err != nil {
		return fmt.Errorf("make temp data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	geoFile := filepath.Join(dir, "geo.mmdb")
	if err := geotest.BuildDemo(geoFile); err != nil {
		return fmt.Errorf("build demo GeoIP database: %w", err)
	}
	base := b.basePort
	if base == 0 {
		if base, err = freeBasePort(3*len(sites) + 1); err != nil {
			return err
		}
	}
	opts := localcluster.Options{
		Sites: sites, DataDir: dir, BasePort: base, GeoIP: []string{geoFile},
		Profile: b.profile, Logger: logger, Version: version,
	}
	secrets, err := localcluster.LoadSecrets(dir)
	if err != nil {
		return err
	}
	cfgs := localcluster.Configs(opts, secrets)

	// One delaying proxy per ordered pair of nodes in different regions, in
	// front of each node's cluster port; each node dials through the mesh.
	meshNodes := make([]delay.Node, len(cfgs))
	for i, c := range cfgs {
		meshNodes[i] = delay.Node{Name: c.Name, Region: c.Region, Addr: c.Cluster}
	}
	mesh, err := delay.NewMesh(meshNodes, rtt, logger)
	if err != nil {
		return fmt.Errorf("start latency proxies: %w", err)
	}
	defer mesh.Close()
	setMeshDelays(mesh, cfgs, rtt, false) // setup runs without delay
	opts.Dial = func(from string) cluster.DialFunc {
		return func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", mesh.Route(from, addr))
		}
	}

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	lc, err := localcluster.Start(sctx, opts)
	cancel()
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	defer func() {
		// The nodes stop one by one; what the others log about the
		// vanishing peers is noise, not a finding of the run.
		level.Set(slog.LevelError + 4)
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := lc.Shutdown(dctx); err != nil {
			fmt.Fprintf(stderr, "bench cluster: shutdown: %v\n", err)
		}
	}()

	f.token = lc.Secrets.PlatformToken
	codes, err := b.setup(ctx, lc)
	if err != nil {
		return err
	}
	leader, err := clusterLeader(lc)
	if err != nil {
		return err
	}
	setMeshDelays(mesh, cfgs, rtt, true)

	info := stdout
	if f.jsonOut {
		info = stderr
	}
	fmt.Fprintf(info, "bench cluster: %s; leader %s (%s); rtt %s; not delayed: client→node, gossip (UDP)\n",
		describeSites(cfgs), leader, regionOf(cfgs, leader), delay.FormatRTT(rtt))

	var results []*bench.Result
	for _, name := range scenarios {
		for _, c := range cfgs {
			t := loadgen.Target{Name: c.Name, Region: c.Region, URL: c.PublicURL}
			sc, err := b.scenario(name, codes, ips)
			if err != nil {
				return err
			}
			res, err := loadgen.Run(ctx, loadgen.Options{
				Rate: f.rate, Connections: f.connections, Duration: f.duration, Warmup: f.warmup,
				Timeout: f.timeout, Name: sc.Name,
			}, t, sc.Build, sc.Check)
			if err != nil {
				return fmt.Errorf("bench %s against %s (%s): %w", sc.Name, c.Name, c.Region, err)
			}
			results = append(results, res)
		}
	}
	if after, err := clusterLeader(lc); err != nil || after != leader {
		fmt.Fprintf(stderr, "bench cluster: warning: the leader changed during the run (%s → %s); latencies mix two placements\n", leader, after)
	}
	return f.report(stdout, results)
}

// scenario builds one scenario of the run (a fresh one per target, so every
// target registers new invitees).
func (b *clusterBench) scenario(name string, codes []string, ips []netip.Addr) (scenario.Scenario, error) {
	f := &b.f
	switch name {
	case "redirect":
		return scenario.Redirect(codes, ips), nil
	case "register":
		return scenario.Register(scenario.RegisterConfig{
			Campaign: f.campaign, Codes: codes, Wait: f.wait, Token: f.token, IPs: ips,
		}), nil
	default:
		return scenario.Funnel(scenario.FunnelConfig{
			Codes: codes, IPs: ips, Conversion: f.conversion,
			Register: scenario.RegisterConfig{Campaign: f.campaign, Wait: f.wait, Token: f.token},
		})
	}
}

// setup creates the bench campaign and issues the share links, then waits
// until every node's replica has applied them (so that no region's first
// requests wait on replication).
func (b *clusterBench) setup(ctx context.Context, lc *localcluster.Cluster) ([]string, error) {
	first := lc.Configs[0].PublicURL
	if err := apiCall(ctx, "POST", first+"/v1/campaigns", lc.Secrets.AdminToken, benchClusterCampaign(b.f.campaign), nil); err != nil {
		return nil, fmt.Errorf("create bench campaign: %w", err)
	}
	codes, err := b.f.codes(ctx, first)
	if err != nil {
		return nil, err
	}
	var target uint64
	for _, n := range lc.Nodes {
		target = max(target, n.Cluster().AppliedIndex())
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range lc.Nodes {
		if err := n.Cluster().WaitIndex(wctx, target); err != nil {
			return nil, fmt.Errorf("wait for %s to apply the bench links: %w", n.Name(), err)
		}
	}
	return codes, nil
}

// benchClusterCampaign is the campaign the cluster benchmark registers
// against: no budget or per-inviter cap, and every fraud check off (all
// requests come from one host, at bench rates, right after the clicks), so
// that every registration is decided "rewarded" by the ledger.
func benchClusterCampaign(id string) map[string]any {
	c := demoCampaign()
	c["id"] = id
	delete(c, "budget")
	delete(c, "per_inviter_cap")
	c["fraud"] = map[string]any{
		"max_per_inviter_per_hour": -1,
		"max_per_ip_per_hour":      -1,
		"max_per_device_per_day":   -1,
		"min_click_to_register":    "-1s",
	}
	return c
}

// setMeshDelays sets every proxy of the mesh to half the RTT between the
// two nodes' regions (on), or to zero (off).
func setMeshDelays(m *delay.Mesh, cfgs []config.Config, rtt map[[2]string]time.Duration, on bool) {
	for _, a := range cfgs {
		for _, c := range cfgs {
			p, ok := m.Proxy(a.Name, c.Name)
			if !ok {
				continue
			}
			d := time.Duration(0)
			if on {
				d = rtt[[2]string{a.Region, c.Region}] / 2
			}
			p.SetDelay(d)
		}
	}
}

// clusterLeader returns the raft leader's name as the first node sees it.
func clusterLeader(lc *localcluster.Cluster) (string, error) {
	for _, n := range lc.Nodes {
		if l, ok := n.Cluster().Leader(); ok {
			return l, nil
		}
	}
	return "", errors.New("bench cluster: no raft leader")
}

func regionOf(cfgs []config.Config, name string) string {
	for _, c := range cfgs {
		if c.Name == name {
			return c.Region
		}
	}
	return "?"
}

func describeSites(cfgs []config.Config) string {
	parts := make([]string, len(cfgs))
	for i, c := range cfgs {
		parts[i] = c.Name + "@" + c.Region + "=" + c.PublicURL
	}
	return strings.Join(parts, " ")
}

// freeBasePort returns a base port p such that p+1 .. p+span-1 are free on
// 127.0.0.1 for TCP and UDP (gossip uses both).
func freeBasePort(span int) (int, error) {
	for range 200 {
		base := 20000 + rand.IntN(4000)*10
		ok := true
		for p := base + 1; p < base+span && ok; p++ {
			addr := "127.0.0.1:" + strconv.Itoa(p)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, errors.New("bench cluster: no free port range found (give --base-port)")
}
