// Package cluster runs one node's membership (hashicorp/memberlist) and one
// replicated log (hashicorp/raft) around any FSM, and forwards commands from
// followers to the leader. It knows nothing about campaigns: the FSM it drives
// (see FSM) is supplied by the caller.
//
// # Ports
//
// A node has two cluster-facing listeners: the gossip address (memberlist,
// TCP and UDP on the same port) and the cluster address (one TCP port). The
// cluster port is multiplexed by its first byte: 'R' carries the raft
// NetworkTransport, 'F' the forwarding RPC, 'S' a status request and 'L' a
// leaving member's notice. Every
// connection starts with a mutual HMAC-SHA256 challenge keyed by
// Config.ClusterKey; a peer that cannot prove the key is dropped before any
// byte reaches raft or the forwarder. Config.TLS optionally wraps the port in
// (m)TLS.
//
// # Profiles
//
// Config.Profile picks memberlist and raft timing. Detection is the time from
// an abrupt stop of a node until no other node lists it alive, measured by
// BenchmarkFailureDetection (3 members on loopback, 2-core machine):
//
//	profile  memberlist base     probe/timeout  suspicion mult/max  push-pull  raft heartbeat/election/lease/commit  detection
//	local    DefaultLocalConfig  200ms/100ms    2 / 2               1s         500ms/500ms/250ms/10ms                0.76-0.92 s
//	lan      DefaultLANConfig    500ms/250ms    3 / 2               10s        1s/1s/500ms/20ms                      2.3-2.7 s
//	wan      DefaultWANConfig    5s/3s          6 / 6 (defaults)    60s        3s/3s/1.5s/50ms                       ~40 s (not measured here;
//	                                                                                                                 DESIGN.md: 42 s)
//
// The lan suspicion timeout is 3 x probe interval x max(1, log10(n)) and
// shrinks towards it from 2x as other members confirm, so detection stays
// under 5 s up to about 100 members.
//
// Raft pre-vote is on (raft v1.8 default, NetworkTransport supports it). A
// node that starts without raft state does not vote for candidates whose
// log goes beyond a bootstrap entry until a leader has given it state (see
// voteGuard): a voter whose disk was lost, back under its old name, must not
// help a stale candidate overwrite committed entries.
//
// # Writes
//
// Apply batches commands from many callers into one raft entry (up to
// Config.MaxBatch commands). A follower forwards its commands, batched and
// pipelined, to the leader over the cluster port; the leader feeds them into
// the same batcher. Every command carries a random 16-byte id; the replicated
// FSM adapter remembers the results of the most recent ids (Config.DedupWindow)
// so a command retried across a leadership change is applied at most once.
// The remembered ids are part of the snapshot.
//
// # Membership
//
// Node metadata (Meta) is gossiped as compact JSON and must fit memberlist's
// 512-byte limit; New checks the worst case so later updates cannot overflow.
// memberlist's public API does not expose the suspect state, so Member.State
// is one of alive, dead or left. A member leaving through Shutdown says so
// in its metadata and in a notice to each peer over the cluster port, so
// peers record "left" (not "dead") whichever arrives first.
//
// Gossip is not authenticated by the cluster key: anyone who can gossip
// (no gossip key, or a holder of the gossip key only) picks its own name
// and metadata. Received metadata is therefore validated (validateMeta:
// coordinates in range; the public URL an absolute http(s) URL,
// scheme://host[:port][/path], of printable ASCII with RFC 3986 path
// characters only, no userinfo, query or fragment; the cluster address
// host:port with a port in 1-65535; short printable text fields); a member
// whose metadata fails is logged once and kept with none (no URL, no
// cluster address, not voter-capable). New refuses a configuration whose
// own metadata would fail. Members lists a member's public URL only while
// the member is alive and this node has verified it (below) at the cluster
// address it gossips, in its current incarnation: a leave or death, or a
// new gossip address, forgets the verification, since memberlist lets
// another node reclaim a dead member's name. The URL listed is the one the
// member's own status reply carries, not the gossiped one. Every node runs
// these checks for the alive members it knows. The node's own entry is
// always complete.
//
// Nothing enters the raft configuration on gossip alone: before the leader
// adds a member (as voter or non-voter) or demotes it, and before a node
// bootstraps with members as voters, the member's cluster address must
// complete the cluster-key handshake (and TLS when configured, through
// Config.Dial) and answer a status request with the member's own name,
// within 2 s. A success is remembered per (name, cluster address) until the
// member leaves, dies or changes gossip address; a failure is logged once
// per (name, address) (by the leader, or by every node while there is
// none) and retried with backoff (1 s doubling to 30 s). The leader adds at most one voter per reconcile.
//
// Raft membership follows gossip: with BootstrapExpect set, once gossip shows
// exactly that many alive voter-capable members (verified as above) and none
// of them has raft state, the one with the lowest name bootstraps with all
// of them as voters.
// BootstrapExpect must equal the number of initial voters: a node that sees
// more voter-capable members without raft state than BootstrapExpect does
// not bootstrap (another node, seeing fewer, may already have bootstrapped
// a different configuration) and logs the misconfiguration once; it is
// added by the leader if one appears.
//
// Afterwards the leader adds alive members (voters as voters, others as
// non-voters), demotes a voter whose metadata says non-voter (when the
// voters left still have a live majority; a leader configured as non-voter
// first hands leadership over), and removes members that left, or were dead
// longer than DeadServerTimeout. A server in the raft configuration that
// gossip does not know at all (it died for good while the others
// restarted) counts as dead from the first reconcile of the current
// leadership term that misses it, once this node has joined gossip, and is
// removed after DeadServerTimeout unless it still answers on its cluster
// address.
//
// A forwarding connection on the leader holds at most a fixed number of
// commands in progress; a peer that stops reading its replies stops only
// that connection, which is closed once a reply write has waited
// ApplyTimeout. Commands longer than MaxCommandBytes are refused
// (ErrCommandTooLarge).
//
// Per-node grow-only counters (Counters) travel with memberlist's push-pull
// state sync, so their totals converge within about one push-pull interval.
package cluster
