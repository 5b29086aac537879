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
// (name, cluster address); a failed one is retried with backoff and logged
// once per (name, address).

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

// peerChecks holds the results; guarded by its mu.
type peerChecks struct {
	ok      map[string]string       // member name → verified cluster address
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
	pc := &c.peers
	if pc.ok == nil {
		pc.ok = make(map[string]string)
		pc.running = make(map[string]bool)
		pc.failed = make(map[string]*peerFailure)
	}
	if a, ok := pc.ok[name]; ok && a == addr {
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
	c.goLoop(func() { c.runPeerCheck(name, addr) })
	return res
}

func (c *Cluster) runPeerCheck(name, addr string) {
	err := c.identifyPeer(name, addr)
	c.peerMu.Lock()
	pc := &c.peers
	delete(pc.running, name)
	logFail := false
	if err == nil {
		pc.ok[name] = addr
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
	} else if logFail {
		c.log.Warn("cluster: member's cluster address did not prove its identity; not adding it to raft (retrying with backoff)",
			"member", name, "addr", addr, "err", err)
	}
}

// identifyPeer asks the node at addr for its status over the cluster port
// (cluster-key handshake, TLS when configured, the Config.Dial hook) and
// checks it carries name.
func (c *Cluster) identifyPeer(name, addr string) error {
	ctx, cancel := context.WithTimeout(c.ctx, peerCheckTimeout)
	defer cancel()
	conn, err := c.d.dialContext(ctx, addr, kindStatus, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var s struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(conn, 16<<20)).Decode(&s); err != nil {
		return fmt.Errorf("read status from %s: %w", addr, err)
	}
	if s.Name != name {
		return fmt.Errorf("cluster address %s answers as %q", addr, s.Name)
	}
	return nil
}

// prunePeerChecks forgets results for members no longer gossiped at the
// checked address (or, for failures, no longer alive).
func (c *Cluster) prunePeerChecks(alive func(name, addr string) (known, isAlive bool)) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	for name, addr := range c.peers.ok {
		if known, _ := alive(name, addr); !known {
			delete(c.peers.ok, name)
		}
	}
	for name, f := range c.peers.failed {
		if known, live := alive(name, f.addr); !known || !live {
			delete(c.peers.failed, name)
		}
	}
}
