package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Gossip alone is not trusted with raft membership: anyone who can gossip
// (no gossip key, or the gossip key without the cluster key) chooses its
// name and metadata. Before the leader adds a member to the raft
// configuration (or demotes it), and before a node bootstraps with members
// as voters, the member's gossiped cluster address must complete the
// cluster-key handshake (and TLS, when configured) and answer a status
// request with the member's own name. Successful checks are remembered per
// (name, cluster address) for the member's current incarnation: a leave or
// death, or a new gossip address, forgets them (forgetPeer), since memberlist
// lets anyone reclaim a dead member's name. A failed check is retried with
// backoff and logged once per (name, address).
//
// Every node verifies the alive members it knows (verifyMembers), not only
// the leader: Members lists a member's public URL only while it is verified,
// and the URL it lists is the one the member's own status reply carries,
// not the gossiped one.

const (
	peerCheckTimeout    = 2 * time.Second
	peerCheckRetryFirst = time.Second
	peerCheckRetryMax   = 30 * time.Second
	maxPeerChecks       = 8 // checks in flight at once
)

// peerCheckResult is what is known about a member's (name, address).
type peerCheckResult int

const (
	peerPending  peerCheckResult = iota // not checked yet, or a first check in flight
	peerVerified                        // its cluster address answered with its name
	peerFailed                          // the last check failed
)

type peerFailure struct {
	addr    string
	next    time.Time // no new check before
	backoff time.Duration
}

// peerProof is a successful check: the cluster address that answered
// and the public URL its status reply gave for the member.
type peerProof struct {
	addr string
	url  string
}

// peerChecks holds the results; guarded by Cluster.peerMu.
type peerChecks struct {
	ok      map[string]peerProof    // member name → verified cluster address and URL
	gen     map[string]uint64       // member name → incarnation counter, bumped by forgetPeer
	running map[string]bool         // member names with a check in flight
	failed  map[string]*peerFailure // member name → last failure
}

// checkPeer returns what is known about the member name at cluster address
// addr and starts a check (in the background) when none is known, or the
// last one failed and its retry time has come. A finished check wakes the
// reconcile loop.
func (c *Cluster) checkPeer(name, addr string) peerCheckResult {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	pc := c.initPeers()
	if v, ok := pc.ok[name]; ok && v.addr == addr {
		return peerVerified
	}
	res := peerPending
	f := pc.failed[name]
	if f != nil && f.addr == addr {
		res = peerFailed
	}
	if pc.running[name] || (res == peerFailed && time.Now().Before(f.next)) ||
		len(pc.running) >= maxPeerChecks || c.ctx.Err() != nil {
		return res
	}
	pc.running[name] = true
	gen := pc.gen[name]
	c.goLoop(func() { c.runPeerCheck(name, addr, gen) })
	return res
}

// initPeers returns c.peers with its maps made; c.peerMu must be held.
func (c *Cluster) initPeers() *peerChecks {
	pc := &c.peers
	if pc.ok == nil {
		pc.ok = make(map[string]peerProof)
		pc.gen = make(map[string]uint64)
		pc.running = make(map[string]bool)
		pc.failed = make(map[string]*peerFailure)
	}
	return pc
}

// forgetPeer drops what is known about the member name: it left or died,
// or another node now gossips under its name. A check in flight for the
// previous incarnation is not recorded.
func (c *Cluster) forgetPeer(name string) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	pc := c.initPeers()
	pc.gen[name]++
	delete(pc.ok, name)
	delete(pc.failed, name)
}

// verifiedURL returns the public URL the member name gave in its status
// reply, if it is verified at cluster address addr.
func (c *Cluster) verifiedURL(name, addr string) (string, bool) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	v, ok := c.peers.ok[name]
	if !ok || v.addr != addr {
		return "", false
	}
	return v.url, true
}

// verifyMembers starts checks (checkPeer) for the alive members this node
// knows, so that Members can list their URLs, and forgets results for
// members no longer gossiped at the checked address. Run on every node.
func (c *Cluster) verifyMembers() {
	if c.ctx.Err() != nil {
		return
	}
	type cand struct{ name, addr string }
	var todo []cand
	ms := make(map[string]Member)
	c.mu.Lock()
	for n, e := range c.members {
		ms[n] = e.m
		if n != c.cfg.Name && e.m.State == StateAlive && !e.leaving && e.m.ClusterAddr != "" {
			todo = append(todo, cand{n, e.m.ClusterAddr})
		}
	}
	c.mu.Unlock()
	c.prunePeerChecks(func(name, addr string) (bool, bool) {
		m, ok := ms[name]
		return ok && m.ClusterAddr == addr, ok && m.State == StateAlive
	})
	for _, m := range todo {
		c.checkPeer(m.name, m.addr)
	}
}

func (c *Cluster) runPeerCheck(name, addr string, gen uint64) {
	url, err := c.identifyPeer(name, addr)
	c.peerMu.Lock()
	pc := &c.peers
	delete(pc.running, name)
	if pc.gen[name] != gen {
		// The member left, died or changed hands meanwhile.
		c.peerMu.Unlock()
		c.wake()
		return
	}
	logFail := false
	if err == nil {
		pc.ok[name] = peerProof{addr: addr, url: url}
		delete(pc.failed, name)
	} else {
		f := pc.failed[name]
		if f == nil || f.addr != addr {
			f = &peerFailure{addr: addr, backoff: peerCheckRetryFirst}
			pc.failed[name] = f
			logFail = true
		} else {
			f.backoff = min(2*f.backoff, peerCheckRetryMax)
		}
		f.next = time.Now().Add(f.backoff)
	}
	c.peerMu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if err == nil {
		c.log.Debug("cluster: member's cluster address verified", "member", name, "addr", addr)
		c.wake()
		c.notifySubs() // its URL is listed now
	} else if leader, ok := c.Leader(); logFail && (!ok || leader == c.cfg.Name) {
		// The leader (or, before there is one, every node: bootstrap)
		// reports it; a node following a leader logs it at debug level.
		c.log.Warn("cluster: member's cluster address did not prove its identity; not adding it to raft (retrying with backoff)",
			"member", name, "addr", addr, "err", err)
	} else if logFail {
		c.log.Debug("cluster: member's cluster address did not prove its identity; not listing its URL (retrying with backoff)",
			"member", name, "addr", addr, "err", err)
	}
}

// identifyPeer asks the node at addr for its status over the cluster port
// (cluster-key handshake, TLS when configured, the Config.Dial hook), checks
// it carries name, and returns the public URL the node lists for itself
// (empty when it lists none or one that fails CheckPublicURL).
func (c *Cluster) identifyPeer(name, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, peerCheckTimeout)
	defer cancel()
	conn, err := c.d.dialContext(ctx, addr, kindStatus, true)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var s struct {
		Name    string `json:"name"`
		Members []struct {
			Name      string `json:"name"`
			PublicURL string `json:"public_url"`
		} `json:"members"`
	}
	if err := json.NewDecoder(io.LimitReader(conn, 16<<20)).Decode(&s); err != nil {
		return "", fmt.Errorf("read status from %s: %w", addr, err)
	}
	if s.Name != name {
		return "", fmt.Errorf("cluster address %s answers as %q", addr, s.Name)
	}
	for _, m := range s.Members {
		if m.Name == name && m.PublicURL != "" && CheckPublicURL(m.PublicURL) == nil {
			return m.PublicURL, nil
		}
	}
	return "", nil
}

// prunePeerChecks forgets results for members no longer gossiped at the
// checked address (or, for failures, no longer alive).
func (c *Cluster) prunePeerChecks(alive func(name, addr string) (known, isAlive bool)) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	for name, v := range c.peers.ok {
		if known, isAlive := alive(name, v.addr); !known || !isAlive {
			delete(c.peers.ok, name)
		}
	}
	for name, f := range c.peers.failed {
		if known, live := alive(name, f.addr); !known || !live {
			delete(c.peers.failed, name)
		}
	}
}
