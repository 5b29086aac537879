package cluster

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// voteGuard is the raft transport of a node that starts without raft state.
// Such a node may be a voter whose disk was lost, back under its old name
// and so its old raft server ID: raft would let it vote for any candidate
// whose log is longer than its empty one, and a stale candidate (say, one
// that was cut off while others committed entries) could then win with that
// vote and overwrite entries the cluster had committed and acknowledged.
//
// Until the node has raft state of its own (entries from a leader, or its
// own bootstrap), the guard answers "not granted" to vote and pre-vote
// requests from candidates whose log goes beyond a bootstrap entry (index
// 1): those come from a cluster that has already elected a leader, which
// will bring the node up to date. A fresh cluster's first election (every
// log at index 1 at most) goes through. The price is liveness in one case:
// while the node is empty, a candidate needs a majority without it.
type voteGuard struct {
	*raft.NetworkTransport
	out    chan raft.RPC
	header raft.RPCHeader
	log    *slog.Logger

	empty  atomic.Bool               // no raft state yet
	raft   atomic.Pointer[raft.Raft] // set once NewRaft returns
	warned atomic.Bool
}

func newVoteGuard(t *raft.NetworkTransport, header raft.RPCHeader, log *slog.Logger) *voteGuard {
	g := &voteGuard{NetworkTransport: t, out: make(chan raft.RPC), header: header, log: log}
	g.empty.Store(true)
	return g
}

// Consumer implements raft.Transport: the RPCs the guard lets through.
func (g *voteGuard) Consumer() <-chan raft.RPC { return g.out }

// run passes RPCs from the network transport to raft until ctx ends.
func (g *voteGuard) run(ctx context.Context) {
	in := g.NetworkTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			if g.refuse(rpc) {
				continue
			}
			select {
			case g.out <- rpc:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// holding reports whether the node still has no raft state.
func (g *voteGuard) holding() bool {
	if !g.empty.Load() {
		return false
	}
	if r := g.raft.Load(); r != nil && r.LastIndex() > 0 {
		g.empty.Store(false)
		return false
	}
	return true
}

// refuse answers a vote or pre-vote request the guard holds back and
// reports whether it did.
func (g *voteGuard) refuse(rpc raft.RPC) bool {
	var last, term uint64
	var resp any
	switch req := rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		last, term = req.LastLogIndex, req.Term
		resp = &raft.RequestVoteResponse{RPCHeader: g.header, Term: term}
	case *raft.RequestPreVoteRequest:
		last, term = req.LastLogIndex, req.Term
		resp = &raft.RequestPreVoteResponse{RPCHeader: g.header, Term: term}
	default:
		return false
	}
	if last <= 1 || !g.holding() {
		return false
	}
	if !g.warned.Swap(true) {
		g.log.Warn("cluster: this node has no raft state but the cluster has entries: not voting until a leader brings it up to date (a voter whose data was lost must not help elect a stale candidate)",
			"candidate_last_index", last)
	}
	rpc.Respond(resp, nil)
	return true
}
