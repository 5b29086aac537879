package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Sentinel errors.
var (
	// ErrShutdown is returned by calls on a Cluster that is shut down.
	ErrShutdown = errors.New("cluster: shut down")
	// ErrNotStarted is returned by calls that need Start first.
	ErrNotStarted = errors.New("cluster: not started")
	// ErrNoLeader is the cause of an Apply that gave up while no leader was known.
	ErrNoLeader = errors.New("cluster: no leader")
)

// Member is one node as seen through gossip.
type Member struct {
	Meta
	State      string `json:"state"` // alive, dead or left
	GossipAddr string `json:"gossip_addr"`
}

// Member states.
const (
	StateAlive = "alive"
	StateDead  = "dead"
	StateLeft  = "left"
)

type memberEntry struct {
	m       Member
	since   time.Time // of the last state change
	leaving bool      // its last meta announced a graceful leave
	badMeta string    // why its last metadata was rejected (logged once)
}

// Cluster is one node's membership and raft replica. Create it with New,
// then Start; Shutdown releases everything. All methods are safe for
// concurrent use.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	fsm   *fsmAdapter
	count *Counters
	d     dialer

	ctx    context.Context // canceled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	startOnce sync.Once
	started   atomic.Bool
	stopOnce  sync.Once
	stopErr   error
	stopping  atomic.Bool // set by QuietLibraryErrors (as Shutdown begins): the libraries' errors are logged at debug level from then on

	// Set by Start, read-only afterwards.
	ml       *memberlist.Memberlist
	keyring  *memberlist.Keyring
	raft     *raft.Raft
	trans    *raft.NetworkTransport
	wal      *wal.WAL
	walMeta  *metadb.BoltMetaDB // closed by us: WAL.Close leaves it open (raft-wal v0.4.0)
	gossip   string             // advertised gossip address
	mux      *mux
	batch    *batcher
	fwd      *forwarder
	observer *raft.Observer
	metrics  *metrics

	reconcileMu sync.Mutex     // one reconcile at a time
	rec         reconcileState // guarded by reconcileMu

	peerMu sync.Mutex
	peers  peerChecks // guarded by peerMu; see checkPeer

	mu       sync.Mutex
	meta     Meta
	metaB    []byte
	leaving  bool
	members  map[string]*memberEntry
	subs     map[int]chan struct{}
	nextSub  int
	kick     chan struct{} // wakes the meta and reconcile loops
	joinedCh chan struct{}
}

// New validates cfg and returns an unstarted Cluster around fsm.
func New(cfg Config, fsm FSM) (*Cluster, error) {
	if fsm == nil {
		return nil, cfgErr("fsm", "nil", "required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	meta := Meta{
		Name: cfg.Name, Region: cfg.Region, Lat: cfg.Lat, Lon: cfg.Lon, PublicURL: cfg.PublicURL,
		ClusterAddr: cfg.ClusterAddr, Voter: cfg.Voter, Role: RoleFollower, Version: cfg.Version,
	}
	if cfg.AdvertiseCluster != "" {
		meta.ClusterAddr = cfg.AdvertiseCluster
	}
	// Ports may still be 0; check with a full-length port.
	worst := meta
	if h, _, err := net.SplitHostPort(worst.ClusterAddr); err == nil {
		worst.ClusterAddr = net.JoinHostPort(h, "65535")
	}
	if err := checkMetaWorstCase(worst); err != nil {
		return nil, err
	}
	if err := checkOwnMeta(worst); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := cfg.Logger.With("node", cfg.Name)
	c := &Cluster{
		cfg:      cfg,
		log:      log,
		fsm:      newFSMAdapter(fsm, cfg.DedupWindow, log),
		count:    newCounters(cfg.Name),
		d:        dialer{key: cfg.ClusterKey, tls: cfg.TLS, hook: cfg.Dial},
		ctx:      ctx,
		cancel:   cancel,
		meta:     meta,
		members:  make(map[string]*memberEntry),
		subs:     make(map[int]chan struct{}),
		kick:     make(chan struct{}, 1),
		joinedCh: make(chan struct{}),
	}
	c.metrics = newMetrics(c)
	return c, nil
}

// Start opens the stores and listeners, starts raft and memberlist and the
// background loops (join, bootstrap, reconcile, metadata). ctx bounds only
// the start itself; the loops run until Shutdown. Start may be called once;
// on error the caller should still call Shutdown.
func (c *Cluster) Start(ctx context.Context) error {
	err := ErrShutdown
	c.startOnce.Do(func() {
		if c.ctx.Err() != nil {
			return
		}
		err = c.start(ctx)
	})
	return err
}

func (c *Cluster) start(ctx context.Context) error {
	cfg := c.cfg
	walDir := filepath.Join(cfg.DataDir, "raft-wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir %q: %w", walDir, err)
	}
	ln, err := net.Listen("tcp", cfg.ClusterAddr)
	if err != nil {
		return fmt.Errorf("listen cluster %q: %w", cfg.ClusterAddr, err)
	}
	advertise := cfg.AdvertiseCluster
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	advAddr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return fmt.Errorf("resolve advertised cluster address %q: %w", advertise, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	c.mux = newMux(ln, cfg.ClusterKey, c.log)
	c.mux.handlers[kindForward] = c.serveForward
	c.mux.handlers[kindStatus] = c.serveStatus
	c.mux.handlers[kindLeave] = c.serveLeave
	c.fwd = newForwarder(c.d, cfg.MaxBatch, c.log)

	c.walMeta = &metadb.BoltMetaDB{}
	c.wal, err = wal.Open(walDir, wal.WithLogger(newHCLogger(c.log, "raft-wal", &c.stopping)), wal.WithMetaStore(c.walMeta))
	if err != nil {
		c.walMeta.Close()
		c.walMeta = nil
		c.mux.close()
		return fmt.Errorf("open raft wal %q: %w", walDir, err)
	}
	logs, err := raft.NewLogCache(1024, c.wal)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, newHCLogger(c.log, "raft-snap", &c.stopping))
	if err != nil {
		c.mux.close()
		return fmt.Errorf("open snapshot store %q: %w", cfg.DataDir, err)
	}
	stream := &raftStream{m: c.mux, d: c.d, advertise: advAddr, closed: make(chan struct{})}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addrProvider{c},
		Logger:                newHCLogger(c.log, "raft-net", &c.stopping),
		Stream:                stream,
		MaxPool:               3,
		Timeout:               10 * time.Second,
	})
	hasState, err := raft.HasExistingState(logs, c.wal, snaps)
	if err != nil {
		c.mux.close()
		return fmt.Errorf("check raft state: %w", err)
	}
	rc := raftConfig(cfg)
	rc.Logger = newHCLogger(c.log, "raft", &c.stopping)
	var trans raft.Transport = c.trans
	var guard *voteGuard
	if !hasState {
		guard = newVoteGuard(c.trans, raft.RPCHeader{
			ProtocolVersion: rc.ProtocolVersion, ID: []byte(cfg.Name), Addr: c.trans.EncodePeer(rc.LocalID, c.trans.LocalAddr()),
		}, c.log)
		trans = guard
	}
	c.raft, err = raft.NewRaft(rc, c.fsm, logs, c.wal, snaps, trans)
	if err != nil {
		c.mux.close()
		return fmt.Errorf("start raft: %w", err)
	}
	if guard != nil {
		guard.raft.Store(c.raft)
		c.goLoop(func() { guard.run(c.ctx) })
	}
	c.batch = newBatcher(c.raft, cfg.MaxBatch, cfg.MaxBatchDelay, cfg.ApplyTimeout, c.metrics.batch.Observe)
	c.batch.start()
	// Only now take connections: the forwarding handler uses c.raft and
	// c.batch (a node restarted quickly gets forwarded commands at once).
	c.mux.start()

	obsCh := make(chan raft.Observation, 16)
	c.observer = raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	c.raft.RegisterObserver(c.observer)
	c.goLoop(func() {
		for {
			select {
			case <-obsCh:
				c.wake()
				c.notifySubs()
			case <-c.ctx.Done():
				return
			}
		}
	})

	c.mu.Lock()
	c.meta.ClusterAddr = advertise
	c.meta.HasState = hasState
	c.metaB, err = encodeMeta(c.meta)
	c.mu.Unlock()
	if err != nil {
		return err
	}

	if err := c.startMemberlist(); err != nil {
		return err
	}
	if err := c.metrics.register(cfg.Registerer); err != nil {
		return err
	}
	c.started.Store(true)
	c.goLoop(c.joinLoop)
	if cfg.BootstrapExpect > 0 && !hasState {
		c.goLoop(c.bootstrapLoop)
	}
	c.goLoop(c.reconcileLoop)
	c.goLoop(c.metaLoop)
	c.log.Info("cluster started", "cluster_addr", advertise, "gossip_addr", c.gossipAddr(), "profile", cfg.Profile, "raft_state", hasState)
	return nil
}

func (c *Cluster) goLoop(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Cluster) startMemberlist() error {
	cfg := c.cfg
	mc := memberlistConfig(cfg.Profile)
	mc.Name = cfg.Name
	host, port, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", cfg.GossipAddr, err)
	}
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.Logger = newStdLogger(c.log, "memberlist", &c.stopping)
	nt, err := newGossipTransport(c.ctx, host, mc.BindPort, mc.Logger)
	if err != nil {
		return err
	}
	mc.Transport = nt
	mc.BindPort = nt.GetAutoBindPort()
	mc.AdvertisePort = mc.BindPort
	if cfg.AdvertiseGossip != "" {
		ah, ap, err := net.SplitHostPort(cfg.AdvertiseGossip)
		if err != nil {
			_ = nt.Shutdown()
			return fmt.Errorf("advertise gossip address %q: %w", cfg.AdvertiseGossip, err)
		}
		if ah, err = resolveHost(c.ctx, ah); err != nil {
			_ = nt.Shutdown()
			return fmt.Errorf("advertise gossip address %q: %w", cfg.AdvertiseGossip, err)
		}
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	if len(cfg.GossipKeys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.GossipKeys, cfg.GossipKeys[0])
		if err != nil {
			_ = nt.Shutdown()
			return fmt.Errorf("gossip keyring: %w", err)
		}
		c.keyring = kr
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.Label = cfg.Label
	mc.Delegate = delegate{c}
	mc.Events = delegate{c}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return fmt.Errorf("start memberlist on %q: %w", cfg.GossipAddr, err)
	}
	c.ml = ml
	// LocalNode points into memberlist's state; read it once, before any
	// metadata update can write it.
	n := ml.LocalNode()
	c.gossip = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	return nil
}

func (c *Cluster) gossipAddr() string { return c.gossip }

// GossipAddr returns the address memberlist advertises (useful with port 0).
func (c *Cluster) GossipAddr() string {
	if !c.started.Load() {
		return ""
	}
	return c.gossipAddr()
}

// ClusterAddr returns the advertised cluster address (useful with port 0).
func (c *Cluster) ClusterAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meta.ClusterAddr
}

// Name returns the node name.
func (c *Cluster) Name() string { return c.cfg.Name }

func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Cluster) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// joinLoop joins the seeds, retrying with backoff until one answers.
func (c *Cluster) joinLoop() {
	defer close(c.joinedCh)
	var seeds []string
	self := c.gossipAddr()
	for _, s := range c.cfg.Seeds {
		if s != self && s != c.cfg.GossipAddr {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return
	}
	backoff := 100 * time.Millisecond
	for {
		// One seed at a time, so Shutdown is noticed between seeds; a dial
		// in progress ends with c.ctx too (gossipTransport).
		contacted := 0
		var errs []error
		for _, s := range seeds {
			if c.ctx.Err() != nil {
				return
			}
			n, err := c.ml.Join([]string{s})
			contacted += n
			if err != nil {
				errs = append(errs, err)
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		if contacted > 0 {
			c.log.Info("cluster joined", "contacted", contacted)
			return
		}
		c.log.Warn("cluster join", "seeds", seeds, "err", errors.Join(errs...), "retry_in", backoff)
		if !c.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// bootstrapLoop bootstraps raft once gossip shows exactly BootstrapExpect
// alive voter-capable members, none with raft state, and this node has the
// lowest name among them. With more such members than BootstrapExpect it
// never bootstraps (two nodes could otherwise bootstrap different
// configurations) and logs the misconfiguration once.
//
// Only members whose cluster address answered with their name (checkPeer)
// count, as voters and as members with raft state; while a check of such a
// member is still pending, the loop waits. A gossiping impostor thus can
// neither become an initial voter nor stop the bootstrap by claiming raft
// state.
func (c *Cluster) bootstrapLoop() {
	tooMany := false
	for {
		if c.raft.LastIndex() > 0 {
			return
		}
		var voters []Member
		existing, pending := false, false
		for _, m := range c.Members() {
			if m.State != StateAlive {
				continue
			}
			self := m.Name == c.cfg.Name
			if !self && (m.HasState || m.Voter) {
				if m.ClusterAddr == "" {
					continue
				}
				switch c.checkPeer(m.Name, m.ClusterAddr) {
				case peerPending:
					pending = true
					continue
				case peerFailed:
					continue
				}
			}
			if m.HasState && !self {
				existing = true
			}
			if m.Voter && m.ClusterAddr != "" {
				voters = append(voters, m)
			}
		}
		if existing {
			c.log.Info("cluster: a member already has raft state; waiting to be added")
			return
		}
		if pending {
			if !c.sleep(c.cfg.ReconcileInterval / 2) {
				return
			}
			continue
		}
		switch {
		case len(voters) > c.cfg.BootstrapExpect:
			if !tooMany {
				tooMany = true
				names := make([]string, len(voters))
				for i, m := range voters {
					names[i] = m.Name
				}
				c.log.Error("cluster: not bootstrapping: more voter-capable members without raft state than bootstrap_expect; bootstrap_expect must equal the number of initial voters",
					"bootstrap_expect", c.cfg.BootstrapExpect, "voters", names)
			}
		case len(voters) == c.cfg.BootstrapExpect:
			sort.Slice(voters, func(i, j int) bool { return voters[i].Name < voters[j].Name })
			if voters[0].Name != c.cfg.Name {
				return // the lowest name bootstraps; the leader adds us
			}
			var conf raft.Configuration
			for _, m := range voters {
				conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.ClusterAddr)})
			}
			err := c.raft.BootstrapCluster(conf).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				c.log.Error("cluster bootstrap", "err", err)
			} else {
				c.log.Info("cluster bootstrapped", "voters", len(voters))
			}
			c.wake()
			return
		}
		if !c.sleep(c.cfg.ReconcileInterval / 2) {
			return
		}
	}
}

// addrProvider resolves raft server IDs to cluster addresses through gossip,
// so a node that comes back on a new address stays reachable.
type addrProvider struct{ c *Cluster }

// ServerAddr implements raft.ServerAddressProvider.
func (p addrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if string(id) == p.c.cfg.Name {
		return raft.ServerAddress(p.c.meta.ClusterAddr), nil
	}
	if e := p.c.members[string(id)]; e != nil && e.m.ClusterAddr != "" {
		return raft.ServerAddress(e.m.ClusterAddr), nil
	}
	return "", fmt.Errorf("cluster: no gossiped address for %q", id)
}

// Members returns every member gossip knows, sorted by name, with decoded
// metadata. The slice is the caller's.
//
// A member's PublicURL is listed only while the member is alive and this
// node has verified it, in its current incarnation, at the cluster address
// it gossips (the address completed the cluster-key handshake and answered
// a status request with the member's name, see checkPeer and
// verifyMembers); the URL listed is the one from that status reply, not
// the gossiped one. Otherwise it is empty, as for a member whose metadata
// was rejected: anyone who can gossip chooses its name and metadata, and
// can reclaim a dead member's name. The node's own entry is always
// complete.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	out := make([]Member, 0, len(c.members))
	for _, e := range c.members {
		m := e.m
		if m.Name == c.cfg.Name {
			m.Meta = c.meta
		}
		out = append(out, m)
	}
	c.mu.Unlock()
	for i := range out {
		m := &out[i]
		if m.Name == c.cfg.Name {
			continue
		}
		url, ok := c.verifiedURL(m.Name, m.ClusterAddr)
		if !ok || m.State != StateAlive || m.ClusterAddr == "" {
			url = ""
		}
		m.PublicURL = url
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Leader returns the raft leader's name, if one is known.
func (c *Cluster) Leader() (string, bool) {
	if !c.started.Load() {
		return "", false
	}
	_, id := c.raft.LeaderWithID()
	return string(id), id != ""
}

// IsLeader reports whether this node is the raft leader.
func (c *Cluster) IsLeader() bool {
	return c.started.Load() && c.raft.State() == raft.Leader
}

// WaitLeader blocks until a leader is known or ctx is done.
func (c *Cluster) WaitLeader(ctx context.Context) error {
	for {
		if _, ok := c.Leader(); ok {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-c.ctx.Done():
			t.Stop()
			return ErrShutdown
		}
	}
}

// Apply replicates cmd and returns the FSM's result once the entry is
// applied on the leader. On a follower the command is forwarded to the
// leader. It retries across leadership changes until ctx is done; the command
// keeps its id, so it is applied at most once (within Config.DedupWindow).
func (c *Cluster) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	res, _, err := c.ApplyIndex(ctx, cmd)
	return res, err
}

// ApplyIndex is Apply that also returns the raft index the command was
// applied at; pass it to WaitIndex for read-your-writes on this node.
func (c *Cluster) ApplyIndex(ctx context.Context, cmd []byte) ([]byte, uint64, error) {
	var id cmdID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, 0, fmt.Errorf("command id: %w", err)
	}
	o, err := c.applyID(ctx, id, cmd)
	return o.result, o.index, err
}

func (c *Cluster) applyID(ctx context.Context, id cmdID, cmd []byte) (outcome, error) {
	if !c.started.Load() {
		return outcome{}, ErrNotStarted
	}
	if len(cmd) > MaxCommandBytes {
		return outcome{}, fmt.Errorf("apply command of %d bytes (at most %d): %w", len(cmd), MaxCommandBytes, ErrCommandTooLarge)
	}
	backoff := 5 * time.Millisecond
	var lastErr error
	for {
		if c.ctx.Err() != nil {
			return outcome{}, ErrShutdown
		}
		actx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		var o outcome
		var err error
		if c.raft.State() == raft.Leader {
			o, err = c.batch.submit(actx, id, cmd)
		} else if addr, lid := c.raft.LeaderWithID(); lid != "" {
			if a, aerr := (addrProvider{c}).ServerAddr(lid); aerr == nil {
				addr = a
			}
			c.metrics.forwarded.Inc()
			o, err = c.fwd.call(actx, string(addr), id, cmd)
		} else {
			err = ErrNoLeader
		}
		cancel()
		if err == nil {
			return o, nil
		}
		if errors.Is(err, ErrShutdown) {
			return outcome{}, err
		}
		lastErr = err
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return outcome{}, fmt.Errorf("apply: %w (last error: %v)", ctx.Err(), lastErr)
		case <-c.ctx.Done():
			t.Stop()
			return outcome{}, ErrShutdown
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// WaitIndex returns once this node's FSM has applied the command at index
// (or a later one), or ctx is done.
func (c *Cluster) WaitIndex(ctx context.Context, index uint64) error {
	return c.fsm.waitIndex(ctx, index)
}

// AppliedIndex returns the index of the last command this node's FSM applied.
func (c *Cluster) AppliedIndex() uint64 { return c.fsm.appliedIndex() }

// Barrier waits until every entry committed before the call is applied on
// the leader; it fails on a follower (raft.ErrNotLeader).
func (c *Cluster) Barrier(ctx context.Context) error {
	if !c.started.Load() {
		return ErrNotStarted
	}
	timeout := c.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := c.raft.Barrier(timeout).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

// SetLoad sets the gossiped load figure; the metadata loop publishes it.
func (c *Cluster) SetLoad(load float64) {
	c.mu.Lock()
	c.meta.Load = load
	c.mu.Unlock()
	c.wake()
}

// Counters returns this node's gossiped counters.
func (c *Cluster) Counters() *Counters { return c.count }

// Subscribe returns a channel that receives a value (coalesced) after every
// membership or leadership change, and a func that cancels the subscription.
// The channel is never closed.
func (c *Cluster) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	id := c.nextSub
	c.nextSub++
	c.subs[id] = ch
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, id)
		c.mu.Unlock()
	}
}

func (c *Cluster) notifySubs() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// InstallKey adds a gossip encryption key on this node (rotation step 1, on
// every node).
func (c *Cluster) InstallKey(key []byte) error {
	if c.keyring == nil {
		return errors.New("cluster: gossip encryption is not enabled")
	}
	if err := c.keyring.AddKey(key); err != nil {
		return fmt.Errorf("install gossip key: %w", err)
	}
	return nil
}

// UseKey makes an installed key primary on this node (rotation step 2).
func (c *Cluster) UseKey(key []byte) error {
	if c.keyring == nil {
		return errors.New("cluster: gossip encryption is not enabled")
	}
	if err := c.keyring.UseKey(key); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	return nil
}

// RemoveKey removes a non-primary key from this node (rotation step 3).
func (c *Cluster) RemoveKey(key []byte) error {
	if c.keyring == nil {
		return errors.New("cluster: gossip encryption is not enabled")
	}
	if err := c.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("remove gossip key: %w", err)
	}
	return nil
}

// role computes this node's raft role.
func (c *Cluster) role() (string, bool) {
	hasState := c.raft.LastIndex() > 0
	switch c.raft.State() {
	case raft.Leader:
		return RoleLeader, hasState
	case raft.Candidate:
		return RoleCandidate, hasState
	}
	f := c.raft.GetConfiguration()
	if f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == c.cfg.Name {
				if s.Suffrage != raft.Voter {
					return RoleNonvoter, hasState
				}
				return RoleFollower, hasState
			}
		}
	}
	if !c.cfg.Voter {
		return RoleNonvoter, hasState
	}
	return RoleFollower, hasState
}

// metaLoop republishes this node's metadata when its role, state or load
// changes.
func (c *Cluster) metaLoop() {
	tick := time.NewTicker(c.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		role, hasState := c.role()
		c.mu.Lock()
		if c.leaving {
			c.mu.Unlock()
			return
		}
		prev := c.meta
		c.meta.Role = role
		c.meta.HasState = c.meta.HasState || hasState
		changed := prev != c.meta
		if changed {
			b, err := encodeMeta(c.meta)
			if err != nil {
				c.log.Error("cluster: metadata update", "err", err)
				c.meta = prev
				changed = false
			} else {
				c.metaB = b
			}
		}
		c.mu.Unlock()
		if changed {
			if err := c.ml.UpdateNode(time.Second); err != nil {
				c.log.Warn("cluster: publish metadata", "err", err)
			}
			c.notifySubs()
		}
		c.reconcile()
	}
}

func (c *Cluster) reconcileLoop() {
	tick := time.NewTicker(c.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.reconcile()
		case <-c.ctx.Done():
			return
		}
	}
}

// reconcileState is what the leader remembers between reconciles, for one
// term: reset when this node leads a new term. Guarded by reconcileMu.
type reconcileState struct {
	term    uint64
	missing map[string]time.Time // servers in the configuration without a member entry: first reconcile that missed them
	logged  map[string]bool      // once-per-term log lines already written
}

// logOnce reports whether key was not yet logged this term, and marks it.
func (s *reconcileState) logOnce(key string) bool {
	if s.logged[key] {
		return false
	}
	s.logged[key] = true
	return true
}

// reconcile makes the raft configuration follow gossip; only the leader acts.
//
// Alive members are added (voters as voters, others as non-voters) and a
// voter whose metadata says non-voter is demoted when the voters left can
// still form a majority; either only once the member's cluster address has
// answered with its name (checkPeer), and at most one voter is added per
// reconcile. A server leaves the configuration when its member
// left, was dead longer than DeadServerTimeout, or has had no member entry
// at all for DeadServerTimeout (counted from the first reconcile of this
// leadership term that missed it, once this node has joined gossip) and
// does not answer on its cluster address.
func (c *Cluster) reconcile() {
	c.verifyMembers() // on every node: Members lists verified members' URLs
	if c.raft.State() != raft.Leader || c.ctx.Err() != nil {
		return
	}
	if !c.reconcileMu.TryLock() {
		return
	}
	defer c.reconcileMu.Unlock()
	now := time.Now()
	if term := c.raft.CurrentTerm(); term != c.rec.term || c.rec.missing == nil {
		c.rec = reconcileState{term: term, missing: make(map[string]time.Time), logged: make(map[string]bool)}
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inCfg := make(map[string]raft.Server)
	for _, s := range f.Configuration().Servers {
		inCfg[string(s.ID)] = s
	}
	type entry struct {
		m       Member
		since   time.Time
		leaving bool
	}
	c.mu.Lock()
	ms := make(map[string]entry, len(c.members))
	for n, e := range c.members {
		ms[n] = entry{e.m, e.since, e.leaving}
	}
	c.mu.Unlock()
	c.prunePeerChecks(func(name, addr string) (bool, bool) {
		e, ok := ms[name]
		return ok && e.m.ClusterAddr == addr, ok && e.m.State == StateAlive
	})
	alive := func(name string) bool {
		if name == c.cfg.Name {
			return true
		}
		e, ok := ms[name]
		return ok && e.m.State == StateAlive && !e.leaving
	}
	// canDemote: the voters left after demoting name still have a live
	// majority among them.
	canDemote := func(name string) bool {
		voters, live := 0, 0
		for id, s := range inCfg {
			if id == name || s.Suffrage != raft.Voter {
				continue
			}
			voters++
			if alive(id) {
				live++
			}
		}
		return voters > 0 && 2*live > voters
	}
	const timeout = 5 * time.Second
	if s, ok := inCfg[c.cfg.Name]; ok && !c.cfg.Voter && s.Suffrage == raft.Voter {
		// This leader is configured as a non-voter: hand leadership over;
		// the next leader demotes it.
		others := false
		for id, s := range inCfg {
			others = others || (id != c.cfg.Name && s.Suffrage == raft.Voter && alive(id))
		}
		if others && canDemote(c.cfg.Name) {
			c.log.Info("cluster: configured as non-voter; transferring leadership to be demoted")
			if err := c.raft.LeadershipTransfer().Error(); err != nil {
				c.log.Warn("cluster: leadership transfer", "err", err)
			}
			return
		} else if c.rec.logOnce("self-demote") {
			c.log.Warn("cluster: configured as non-voter but no other voter can take over; staying a voter")
		}
	}
	// Gossip alone never changes the configuration: a member is added or
	// demoted only once its cluster address has answered with its name
	// (checkPeer). At most one voter is added per reconcile.
	verified := func(name string, addr raft.ServerAddress) bool {
		return c.checkPeer(name, string(addr)) == peerVerified
	}
	addedVoter := false
	for name, e := range ms {
		if name == c.cfg.Name || e.m.State != StateAlive || e.m.ClusterAddr == "" || e.leaving {
			continue
		}
		s, ok := inCfg[name]
		addr := raft.ServerAddress(e.m.ClusterAddr)
		switch {
		case e.m.Voter && (!ok || s.Suffrage != raft.Voter || s.Address != addr):
			if addedVoter || !verified(name, addr) {
				continue
			}
			addedVoter = true
			c.log.Info("cluster: adding voter", "member", name, "addr", addr)
			if err := c.raft.AddVoter(raft.ServerID(name), addr, 0, timeout).Error(); err != nil {
				c.log.Warn("cluster: add voter", "member", name, "err", err)
			}
		case !e.m.Voter && ok && s.Suffrage == raft.Voter:
			if !canDemote(name) {
				if c.rec.logOnce("demote:" + name) {
					c.log.Warn("cluster: member is configured as non-voter but demoting it would leave no live majority of voters; keeping it a voter for now", "member", name)
				}
				continue
			}
			if !verified(name, addr) {
				continue
			}
			c.log.Info("cluster: demoting voter configured as non-voter", "member", name)
			if err := c.raft.DemoteVoter(raft.ServerID(name), 0, timeout).Error(); err != nil {
				c.log.Warn("cluster: demote voter", "member", name, "err", err)
			}
		case !e.m.Voter && (!ok || s.Address != addr):
			if !verified(name, addr) {
				continue
			}
			c.log.Info("cluster: adding non-voter", "member", name, "addr", addr)
			if err := c.raft.AddNonvoter(raft.ServerID(name), addr, 0, timeout).Error(); err != nil {
				c.log.Warn("cluster: add non-voter", "member", name, "err", err)
			}
		}
	}
	for name := range c.rec.missing {
		if _, ok := inCfg[name]; !ok {
			delete(c.rec.missing, name)
		}
	}
	joined := false
	select {
	case <-c.joinedCh:
		joined = true
	default:
	}
	for name, s := range inCfg {
		if name == c.cfg.Name {
			continue
		}
		e, ok := ms[name]
		var gone bool
		state := e.m.State
		if ok {
			delete(c.rec.missing, name)
			gone = e.m.State == StateLeft ||
				(e.m.State == StateDead && now.Sub(e.since) > c.cfg.DeadServerTimeout)
		} else if joined {
			// Never seen by gossip (it may have died while every other
			// node restarted): dead once missing for DeadServerTimeout.
			state = "unknown to gossip"
			first, seen := c.rec.missing[name]
			if !seen {
				c.rec.missing[name] = now
				first = now
			}
			if now.Sub(first) > c.cfg.DeadServerTimeout {
				if c.answers(string(s.Address)) {
					if c.rec.logOnce("missing:" + name) {
						c.log.Warn("cluster: server in the raft configuration is unknown to gossip but answers on its cluster address; keeping it", "member", name, "addr", s.Address)
					}
					continue
				}
				gone = true
			}
		}
		if !gone {
			continue
		}
		c.log.Info("cluster: removing server", "member", name, "state", state)
		if err := c.raft.RemoveServer(raft.ServerID(name), 0, timeout).Error(); err != nil {
			c.log.Warn("cluster: remove server", "member", name, "err", err)
		}
	}
}

// answers reports whether a node answers on the cluster address addr (it
// completes the cluster-key handshake within a second).
func (c *Cluster) answers(addr string) bool {
	conn, err := c.d.dial(addr, kindStatus, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// QuietLibraryErrors makes raft, its transport and memberlist log their
// errors at debug level from now on, as Shutdown does from its start: for a
// caller about to stop this node's peers as well (a whole local cluster),
// whose going away they would otherwise report as errors.
func (c *Cluster) QuietLibraryErrors() { c.stopping.Store(true) }

// Shutdown stops the node: forwarding, raft, then a graceful memberlist
// Leave and Shutdown, then the stores. It is idempotent and waits for every
// goroutine the Cluster started. ctx bounds the Leave.
func (c *Cluster) Shutdown(ctx context.Context) error {
	return c.stop(ctx, true)
}

func (c *Cluster) stop(ctx context.Context, leave bool) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.doStop(ctx, leave)
	})
	return c.stopErr
}

func (c *Cluster) doStop(ctx context.Context, leave bool) error {
	c.QuietLibraryErrors()
	var errs []error
	if c.ml != nil && leave {
		c.mu.Lock()
		c.leaving = true
		c.mu.Unlock()
		// Announce the graceful leave in metadata first, so peers can tell
		// "left" from "dead" (memberlist's events do not).
		if b, err := c.leavingMeta(); err == nil {
			c.mu.Lock()
			c.metaB = b
			c.mu.Unlock()
			_ = c.ml.UpdateNode(leaveTimeout(ctx, 500*time.Millisecond))
		}
		c.announceLeave(leaveTimeout(ctx, 500*time.Millisecond))
	}
	c.cancel()
	if c.fwd != nil {
		c.fwd.close()
	}
	if c.raft != nil {
		if c.observer != nil {
			c.raft.DeregisterObserver(c.observer)
		}
		if err := c.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	// Close the cluster port's connections (forwarding ones included, whose
	// handlers return) before waiting for the batcher's entries in flight.
	if c.mux != nil {
		c.mux.close()
	}
	if c.batch != nil {
		c.batch.close()
	}
	if c.trans != nil {
		c.trans.Close()
	}
	if c.ml != nil {
		if leave {
			if err := c.ml.Leave(leaveTimeout(ctx, 2*time.Second)); err != nil {
				errs = append(errs, fmt.Errorf("memberlist leave: %w", err))
			}
		}
		if err := c.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("memberlist shutdown: %w", err))
		}
	}
	c.wg.Wait()
	c.metrics.unregister(c.cfg.Registerer)
	if c.wal != nil {
		if err := c.wal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft wal: %w", err))
		}
	}
	if c.walMeta != nil {
		if err := c.walMeta.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft wal metadata: %w", err))
		}
	}
	return errors.Join(errs...)
}

// announceLeave sends this node's leave notice to every peer gossip shows
// alive, over the cluster port and in parallel, and returns when each has
// acknowledged it or failed, within timeout. A peer that acknowledged has
// recorded the leave before memberlist's Leave sends its dead message,
// which would otherwise cancel the leaving metadata still queued for
// gossip and make the peer record "dead".
func (c *Cluster) announceLeave(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	var peers []string
	c.mu.Lock()
	for name, e := range c.members {
		if name != c.cfg.Name && e.m.State == StateAlive && e.m.ClusterAddr != "" {
			peers = append(peers, e.m.ClusterAddr)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, addr := range peers {
		wg.Go(func() {
			if err := c.sendLeave(addr, deadline); err != nil {
				c.log.Debug("cluster: leave notice", "peer", addr, "err", err)
			}
		})
	}
	wg.Wait()
}

// sendLeave delivers the leave notice to one peer and waits for its
// acknowledgement, all before deadline. The notice is the node's name,
// preceded by its length in one byte (names are at most 128 bytes); the
// acknowledgement is one byte.
func (c *Cluster) sendLeave(addr string, deadline time.Time) error {
	conn, err := c.d.dial(addr, kindLeave, time.Until(deadline))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := conn.Write(append([]byte{byte(len(c.cfg.Name))}, c.cfg.Name...)); err != nil {
		return fmt.Errorf("write leave notice: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("read acknowledgement: %w", err)
	}
	return nil
}

// serveLeave records a peer's leave notice (see sendLeave) and
// acknowledges it.
func (c *Cluster) serveLeave(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return
	}
	name := make([]byte, n[0])
	if _, err := io.ReadFull(conn, name); err != nil {
		return
	}
	c.markLeaving(string(name))
	_, _ = conn.Write([]byte{1})
}

// resolveHost returns host if it is an IP address, else the first address
// it resolves to (IPv4 preferred): memberlist advertises an IP, while
// deployments name nodes (a StatefulSet pod's DNS name, say).
func resolveHost(ctx context.Context, host string) (string, error) {
	if net.ParseIP(host) != nil {
		return host, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("resolve %q: no addresses", host)
	}
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a.Unmap()
			break
		}
	}
	return best.String(), nil
}

func leaveTimeout(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < def {
			return max(d, time.Millisecond)
		}
	}
	return def
}

// leavingMeta encodes the current meta with the leaving flag.
func (c *Cluster) leavingMeta() ([]byte, error) {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	return encodeWireMeta(m, true)
}
