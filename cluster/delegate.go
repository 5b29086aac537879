package cluster

import (
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate adapts memberlist's callbacks to the Cluster. memberlist calls
// them from its own goroutines; none of them blocks.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = delegate{}
)

// NodeMeta returns the encoded local metadata.
func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	if len(d.c.metaB) > limit {
		return nil
	}
	return append([]byte(nil), d.c.metaB...)
}

// NotifyMsg ignores user messages; none are sent.
func (d delegate) NotifyMsg([]byte) {}

// GetBroadcasts has nothing to broadcast.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState returns the counters for push-pull.
func (d delegate) LocalState(join bool) []byte { return d.c.count.encode() }

// MergeRemoteState merges a peer's counters.
func (d delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	st, err := decodeCounters(buf)
	if err != nil {
		d.c.log.Warn("cluster: bad counter state from peer", "err", err)
		return
	}
	d.c.count.merge(st)
}

func (d delegate) upsert(n *memberlist.Node, state string) {
	// Metadata that fails to decode or validate leaves the member with
	// none (decodeMeta): no public URL, no cluster address, not a voter.
	meta, leaving, err := decodeMeta(n.Name, n.Meta)
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	c := d.c
	c.mu.Lock()
	e := c.members[n.Name]
	if e == nil {
		e = &memberEntry{}
		c.members[n.Name] = e
	}
	// Log a rejection once per distinct problem, not on every update.
	logBad := false
	if err != nil && err.Error() != e.badMeta {
		e.badMeta, logBad = err.Error(), true
	} else if err == nil {
		e.badMeta = ""
	}
	if state == "" { // a leave event
		state = StateDead
		if e.leaving || leaving {
			state = StateLeft
		}
	} else {
		e.leaving = leaving
	}
	if e.m.State != state {
		e.since = time.Now()
	}
	// A verified cluster address (checkPeer) holds for one incarnation: a
	// dead member's name can be reclaimed by another node.
	forget := n.Name != c.cfg.Name && (state != StateAlive || (e.m.GossipAddr != "" && e.m.GossipAddr != addr))
	if state == StateAlive || e.m.Name == "" {
		e.m.Meta = meta
	}
	e.m.State = state
	e.m.GossipAddr = addr
	c.mu.Unlock()
	if forget {
		c.forgetPeer(n.Name)
	}
	if logBad {
		c.log.Warn("cluster: ignoring the member's gossiped metadata", "member", n.Name, "gossip_addr", addr, "err", err)
	}
	c.wake()
	c.notifySubs()
}

// markLeaving records that a known member announced its graceful leave (its
// leave notice, see serveLeave). It turns "dead" into "left" when
// memberlist's leave event came first.
func (c *Cluster) markLeaving(name string) {
	c.mu.Lock()
	e := c.members[name]
	changed := false
	if e != nil && name != c.cfg.Name {
		e.leaving = true
		if e.m.State == StateDead {
			e.m.State = StateLeft
			e.since = time.Now()
			changed = true
		}
	}
	c.mu.Unlock()
	if changed {
		c.wake()
		c.notifySubs()
	}
}

// NotifyJoin records an alive member.
func (d delegate) NotifyJoin(n *memberlist.Node) { d.upsert(n, StateAlive) }

// NotifyLeave records a dead or departed member.
func (d delegate) NotifyLeave(n *memberlist.Node) { d.upsert(n, "") }

// NotifyUpdate records new metadata.
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.upsert(n, StateAlive) }
