// Package node wires one refrouter edge node: configuration, the cluster
// (gossip and raft), the reward ledger replica, the durable outbox and its
// replicator, GeoIP and routing, and the public HTTP API on fasthttp.
//
// A Node is built by New, started by Start and stopped by Shutdown, which
// drains HTTP first, then the background workers, then the cluster, then the
// outbox, in reverse order of dependency.
package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/attribution/replicate"
	"github.com/refrouter/refrouter/clientip"
	"github.com/refrouter/refrouter/cluster"
	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/edgehttp"
	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
	"github.com/refrouter/refrouter/routing"
	"github.com/valyala/fasthttp"
)

// Node is one running edge node. Its methods are safe for concurrent use.
type Node struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	now     func() time.Time

	nameBytes, regionBytes []byte
	edgeHeaders            []byte
	realClock              bool // now is time.Now, so a request's read time can stand in for it
	tokens                 []tokenRole
	trusted                []netip.Prefix
	proxies                *clientip.Resolver // trusted, reading the configured header

	keys       atomic.Pointer[links.Keyring] // replaced by watchKeys when the issuing generation changes
	masterKeys []links.MasterKey
	qrCache    *lru.Cache[string, []byte] // rendered QR code images by share code
	geo        *geo.DB                    // nil without a GeoIP database
	ledger     *ledger.Ledger
	cluster    *cluster.Cluster
	outbox     *outbox.Outbox
	table      *routing.Table
	policy     routing.Policy
	rules      atomic.Pointer[ruleCache]

	pool       *pgxpool.Pool // nil without a DSN
	replicator *replicate.Replicator
	dbReady    bool // the database was reached and its schema checked; owned by runReplicator after New

	metrics *metrics
	reg     *prometheus.Registry
	server  *fasthttp.Server
	edge    *edgehttp.Server // the fast path in front of server
	ln      *trackingListener

	clicks  *clickQueue
	clickID atomic.Uint64

	regs *registry // pending registrations owned by this node

	stop     context.CancelFunc
	wg       sync.WaitGroup
	ready    atomic.Bool
	shutOnce sync.Once
	shutErr  error
}

type tokenRole struct {
	token []byte
	role  string
}

// Options carries what a Node takes besides its configuration.
type Options struct {
	Logger  *slog.Logger     // nil: slog.Default()
	Version string           // reported in gossip metadata and /healthz
	Now     func() time.Time // nil: time.Now
	// Dial, when set, opens the node's outgoing cluster-port connections
	// (cluster.Config.Dial), e.g. through latency proxies; nil: direct TCP.
	Dial cluster.DialFunc
}

// New validates cfg, opens the node's state in cfg.DataDir and builds every
// part of the node without starting any network listener.
func New(cfg config.Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sec, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	realClock := opts.Now == nil
	if opts.Now == nil {
		opts.Now = time.Now
	}
	n := &Node{
		cfg:         cfg,
		log:         opts.Logger.With("node", cfg.Name),
		version:     opts.Version,
		now:         opts.Now,
		realClock:   realClock,
		edgeHeaders: edgeHeaders(cfg.Name, cfg.Region),
		nameBytes:   []byte(cfg.Name),
		regionBytes: []byte(cfg.Region),
		clicks:      newClickQueue(),
		reg:         prometheus.NewRegistry(),
	}
	n.clickID.Store(uint64(opts.Now().UnixNano()))
	for tok, role := range sec.Tokens {
		n.tokens = append(n.tokens, tokenRole{token: []byte(tok), role: role})
	}
	if n.trusted, err = clientip.ParsePrefixes(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("config: trusted_proxies: %w", err)
	}
	header := map[string]clientip.Header{"": clientip.HeaderXFF, "x-forwarded-for": clientip.HeaderXFF,
		"forwarded": clientip.HeaderForwarded, "auto": clientip.HeaderAuto}[cfg.TrustedProxyHeader]
	n.proxies = clientip.NewResolver(n.trusted, header)
	if n.masterKeys, err = masterKeys(sec.Secrets, n.now()); err != nil {
		return nil, err
	}
	kr, err := keyringAt(n.masterKeys, cfg.ClickTokenVersion, n.now())
	if err != nil {
		return nil, err
	}
	n.keys.Store(kr)
	if n.qrCache, err = lru.New[string, []byte](qrCacheSize); err != nil {
		return nil, fmt.Errorf("qr cache: %w", err)
	}
	// A GeoIP file that is not there is skipped with a warning (the node
	// serves without geolocation, as when none is configured: an optional
	// volume left empty); one that is there but unreadable is an error.
	if cfg.Lat == 0 && cfg.Lon == 0 {
		// Routing ranks nodes by distance: a node without coordinates sits
		// in the Gulf of Guinea, nearest to nobody in particular.
		n.log.Warn("lat and lon are not set: routing places this node at 0,0", "node", cfg.Name)
	}
	var geoFiles []string
	for _, p := range cfg.GeoIP {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			n.log.Warn("GeoIP database not found; serving without it", "geoip", p)
			continue
		}
		geoFiles = append(geoFiles, p)
	}
	if len(geoFiles) > 0 {
		if n.geo, err = geo.Open(geoFiles...); err != nil {
			return nil, fmt.Errorf("open geoip: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", cfg.DataDir, err)
	}
	n.metrics = newMetrics(n.reg)
	n.ledger = ledger.New()
	n.regs = newRegistry()
	n.ledger.SetObserver(n.onDecision)

	n.outbox, err = outbox.Open(outbox.Options{
		Dir:      filepath.Join(cfg.DataDir, "outbox"),
		MaxBytes: cfg.OutboxMaxBytes,
		Logger:   n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	n.outbox.Register(cursorSubmitter)
	if sec.DSN == "" && n.outbox.Cursor(replicate.DefaultCursor) != 0 {
		n.log.Warn("no database configured, but an earlier run replicated from this outbox: its cursor keeps every record it has not passed, so the outbox will not shrink; configure the database again, or drop the cursor if it is gone for good (refrouter outbox drop-cursor)",
			"cursor", replicate.DefaultCursor, "seq", n.outbox.Cursor(replicate.DefaultCursor))
	}

	n.cluster, err = cluster.New(cluster.Config{
		Name:             cfg.Name,
		Region:           cfg.Region,
		Lat:              cfg.Lat,
		Lon:              cfg.Lon,
		PublicURL:        cfg.PublicURL,
		Version:          opts.Version,
		GossipAddr:       cfg.Gossip,
		ClusterAddr:      cfg.Cluster,
		AdvertiseGossip:  advertise(cfg.Advertise, cfg.Gossip),
		AdvertiseCluster: advertise(cfg.Advertise, cfg.Cluster),
		Seeds:            cfg.Seeds,
		Profile:          cfg.Profile,
		GossipKeys:       keyList(sec.GossipKey),
		ClusterKey:       sec.ClusterKey,
		Voter:            cfg.Voter,
		BootstrapExpect:  cfg.BootstrapExpect,
		DataDir:          filepath.Join(cfg.DataDir, "raft"),
		Dial:             opts.Dial,
		Logger:           opts.Logger,
	}, n.ledger)
	if err != nil {
		n.outbox.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.table = routing.NewTable(cfg.Name, routing.Options{})
	n.policy = routing.Policy{Mode: cfg.Routing.Mode, ThresholdKm: cfg.Routing.ThresholdKm}
	n.rules.Store(&ruleCache{})

	if sec.DSN != "" {
		if err := n.openReplication(sec.DSN); err != nil {
			n.outbox.Close()
			return nil, err
		}
	}
	if err := n.loadPending(); err != nil {
		n.outbox.Close()
		return nil, err
	}
	n.registerGauges()
	n.server = n.newServer()
	if n.edge, err = n.newEdge(); err != nil {
		n.outbox.Close()
		return nil, err
	}
	return n, nil
}

func advertise(host, listen string) string {
	if host == "" {
		return ""
	}
	_, port, _ := net.SplitHostPort(listen)
	return net.JoinHostPort(host, port)
}

func keyList(k []byte) [][]byte {
	if k == nil {
		return nil
	}
	return [][]byte{k}
}

// NewKeyring builds the link keyring from the configured master keys and
// click_token_version: every generation verifies until its retire_at, the
// newest one not retired at now whose issue_from has come issues, and click
// tokens are signed in version clickTokenVersion (1 or 2; both verify).
// `refrouter link` uses it offline, the node at start (and again whenever
// the issuing generation changes, see watchKeys).
func NewKeyring(secrets []config.Secret, clickTokenVersion int, now time.Time) (*links.Keyring, error) {
	keys, err := masterKeys(secrets, now)
	if err != nil {
		return nil, err
	}
	return keyringAt(keys, clickTokenVersion, now)
}

// masterKeys decodes the configured secrets. Codes carry the generation mod
// 4, so a newer generation hides an older one of the same residue: that is
// refused while the older one still verifies (not retired at now), since its
// codes would stop verifying before their grace period ends.
func masterKeys(secrets []config.Secret, now time.Time) ([]links.MasterKey, error) {
	keys := make([]links.MasterKey, 0, len(secrets))
	for _, s := range secrets {
		k, err := base64.StdEncoding.DecodeString(s.Key)
		if err != nil {
			return nil, fmt.Errorf("config: secrets gen %d: not base64: %w", s.Gen, err)
		}
		keys = append(keys, links.MasterKey{Gen: s.Gen, Key: k, RetireAt: s.RetireAt, IssueFrom: s.IssueFrom})
	}
	for _, old := range keys {
		for _, nw := range keys {
			if nw.Gen > old.Gen && nw.Gen&3 == old.Gen&3 && (old.RetireAt.IsZero() || now.Before(old.RetireAt)) {
				return nil, fmt.Errorf("config: secrets: gen %d would hide gen %d (codes carry the generation mod 4) while gen %d still verifies; retire gen %d first (retire_at in the past) or use another generation number",
					nw.Gen, old.Gen, old.Gen, old.Gen)
			}
		}
	}
	return keys, nil
}

// keyringAt builds the keyring whose issuing generation is the one for now.
func keyringAt(keys []links.MasterKey, clickTokenVersion int, now time.Time) (*links.Keyring, error) {
	if clickTokenVersion != links.ClickTokenV1 && clickTokenVersion != links.ClickTokenV2 {
		return nil, fmt.Errorf("config: click_token_version %d: must be %d or %d", clickTokenVersion, links.ClickTokenV1, links.ClickTokenV2)
	}
	cur, ok := links.LatestGen(keys, now)
	if !ok {
		return nil, errors.New("config: secrets: no master link key may issue codes now (every one is retired, or its issue_from is still to come)")
	}
	kr, err := links.NewKeyring(keys, cur, links.WithClickTokenVersion(uint8(clickTokenVersion)))
	if err != nil {
		return nil, fmt.Errorf("config: secrets: %w", err)
	}
	return kr, nil
}

// Start opens the listeners, joins the cluster and starts the node's workers.
// It returns once the HTTP listener accepts connections; readiness (a leader
// known and the local replica caught up) follows and is reported by /readyz
// and WaitReady.
func (n *Node) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	if err := n.cluster.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("start cluster: %w", err)
	}
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		cancel()
		n.cluster.Shutdown(ctx)
		return fmt.Errorf("listen %s: %w", n.cfg.Listen, err)
	}
	n.ln = newTrackingListener(ln)
	n.goRun(func() { n.watchKeys(runCtx) })
	n.goRun(func() { n.recordClicks(runCtx) })
	n.goRun(func() { n.submitLoop(runCtx) })
	n.goRun(func() { n.watchMembers(runCtx) })
	n.goRun(func() { n.watchReady(runCtx) })
	if n.geo != nil {
		n.goRun(func() {
			n.geo.Watch(runCtx, 5*time.Second, func(err error) { n.log.Warn("geoip reload", "err", err) })
		})
	}
	if n.replicator != nil {
		n.goRun(func() { n.runReplicator(runCtx) })
	}
	n.goRun(func() {
		if err := n.server.Serve(n.edge.Fallback()); err != nil {
			n.log.Error("http server stopped", "err", err)
		}
	})
	n.goRun(func() {
		if err := n.edge.Serve(n.ln); err != nil {
			n.log.Error("http listener stopped", "err", err)
		}
	})
	n.log.Info("node started", "http", ln.Addr().String(), "gossip", n.cfg.Gossip, "cluster", n.cfg.Cluster, "region", n.cfg.Region)
	return nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Addr returns the HTTP listener's address (useful with port 0).
func (n *Node) Addr() string {
	if n.ln == nil {
		return n.cfg.Listen
	}
	return n.ln.Addr().String()
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Ledger returns the node's ledger replica (read-only use).
func (n *Node) Ledger() *ledger.Ledger { return n.ledger }

// Cluster returns the node's cluster handle.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// Keys returns the node's link keyring.
func (n *Node) Keys() *links.Keyring { return n.keys.Load() }

// WaitReady blocks until the node is ready or ctx is done.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !n.ready.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w", n.cfg.Name, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// watchReady marks the node ready once a leader is known and this replica has
// applied everything committed before it started (a barrier through the log).
func (n *Node) watchReady(ctx context.Context) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.cluster.WaitLeader(wctx)
		if err == nil {
			_, err = n.applyAndWait(wctx, ledger.EncodeNoop())
		}
		cancel()
		if err == nil {
			n.ready.Store(true)
			n.log.Info("node ready")
			n.resumePending(ctx)
			return
		}
		n.log.Debug("waiting for the cluster", "err", err)
	}
}

// applyAndWait applies cmd through the cluster and waits until the local
// replica has applied it too, so the caller reads its own write.
func (n *Node) applyAndWait(ctx context.Context, cmd []byte) ([]byte, error) {
	res, idx, err := n.cluster.ApplyIndex(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if err := n.cluster.WaitIndex(ctx, idx); err != nil {
		return nil, err
	}
	return res, nil
}

// Shutdown stops the node: HTTP first (in-flight requests drain), then the
// workers (clicks flushed to the outbox), the replicator, the cluster (graceful
// leave) and the outbox. It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		var errs []error
		if n.ln != nil {
			// The fast path first (it stops accepting and closes its
			// connections once answered), then fasthttp with the
			// connections handed to it; fasthttp's shutdown closes its
			// listener even when ctx is already done, so it always runs.
			err := errors.Join(n.edge.Shutdown(ctx), n.server.ShutdownWithContext(ctx))
			if err != nil {
				// The drain deadline passed: close what is left, so that no
				// client keeps talking to a node that is going away. (The
				// fast path's goroutines are gone by now: edge.Shutdown
				// waits for them, and only they may close their
				// connections while they serve them.)
				closed := n.ln.closeAll()
				errs = append(errs, fmt.Errorf("http shutdown: %w (closed %d connections)", err, closed))
			}
		}
		if n.stop != nil {
			n.stop()
		}
		n.wg.Wait()
		if err := n.cluster.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cluster shutdown: %w", err))
		}
		if n.pool != nil {
			n.pool.Close()
		}
		if err := n.outbox.Close(); err != nil {
			errs = append(errs, fmt.Errorf("outbox close: %w", err))
		}
		if n.geo != nil {
			n.geo.Close()
		}
		n.shutErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.shutErr
}

// qrCacheSize bounds the QR code images kept (about 1 KiB each).
const qrCacheSize = 4096

// watchKeys switches the issuing link-key generation when it changes with
// time: a key's issue_from comes (the rotation's second step, without a
// restart) or the issuing key's retire_at passes. It checks every few
// seconds until ctx ends.
func (n *Node) watchKeys(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.refreshKeys(n.now())
	}
}

// refreshKeys rebuilds the keyring when the generation that issues at now
// differs from the current one.
func (n *Node) refreshKeys(now time.Time) {
	cur := n.keys.Load().Current()
	if g, ok := links.LatestGen(n.masterKeys, now); !ok || g == cur {
		if !ok {
			n.log.Error("no master link key may issue codes now; still issuing with the last one", "gen", cur)
		}
		return
	}
	kr, err := keyringAt(n.masterKeys, n.cfg.ClickTokenVersion, now)
	if err != nil {
		n.log.Error("rebuild link keyring", "err", err)
		return
	}
	n.keys.Store(kr)
	n.log.Info("link codes now issued with another key generation", "from", cur, "to", kr.Current())
}
