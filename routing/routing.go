// Package routing ranks the cluster's nodes for a client location and decides
// whether a request should be served here or redirected to a nearer region.
//
// A Table holds an immutable snapshot of the known nodes behind an atomic
// pointer: Update (from the membership goroutine) swaps the snapshot, while
// Rank, Nearest and Policy.Decide (from request goroutines) read it without
// locks. Nearest and Decide do not allocate.
//
// routing does not import geo or cluster: callers pass coordinates, and
// membership arrives through the MemberSource interface defined here.
package routing

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// EarthRadiusKm is the mean Earth radius (IUGG) used by DistanceKm.
const EarthRadiusKm = 6371.0088

// Node is one cluster member as routing sees it. Load is in [0, 1] (values
// outside are clamped, NaN counts as 1). Only Alive nodes are ever ranked;
// Suspect nodes are ranked behind a penalty.
type Node struct {
	Name    string
	Region  string
	URL     string // public base URL, the redirect target
	Lat     float64
	Lon     float64
	Load    float64
	Suspect bool
	Alive   bool
}

// MemberSource supplies the current membership. Nodes may be called from any
// goroutine and must return a slice the caller may keep (a copy).
type MemberSource interface {
	Nodes() []Node
}

// Ranked is a node with its distance to a client and its score (distance plus
// penalties, in km; lower is better).
type Ranked struct {
	Node
	DistanceKm float64
	Score      float64
}

// Options tunes scoring. Negative or NaN values are treated as 0.
type Options struct {
	// LoadPenaltyKm is added to a node's score per unit of load (a node at
	// load 1 counts as this much farther away).
	LoadPenaltyKm float64
	// SuspectPenaltyKm is added to the score of a suspect node.
	SuspectPenaltyKm float64
	// HysteresisKm and HysteresisRatio set the margin by which another node
	// must beat the current one before Nearest switches: the margin is
	// max(HysteresisKm, HysteresisRatio × current score).
	HysteresisKm    float64
	HysteresisRatio float64
}

// DefaultOptions returns the scoring used by the demo cluster: a fully loaded
// node counts as 1,000 km farther, a suspect one as 5,000 km farther, and a
// switch needs a 200 km or 10 % improvement.
func DefaultOptions() Options {
	return Options{LoadPenaltyKm: 1000, SuspectPenaltyKm: 5000, HysteresisKm: 200, HysteresisRatio: 0.10}
}

func (o Options) sanitized() Options {
	fix := func(v float64) float64 {
		if !(v > 0) || math.IsInf(v, 1) {
			return 0
		}
		return v
	}
	return Options{fix(o.LoadPenaltyKm), fix(o.SuspectPenaltyKm), fix(o.HysteresisKm), fix(o.HysteresisRatio)}
}

// snapshot is immutable once published.
type snapshot struct {
	nodes []Node  // valid coordinates only, sorted by name
	pts   []point // nodes[i]'s position, precomputed
}

// point is a position in radians with its latitude's cosine, so that a
// distance costs two sines, a square root and an arcsine.
type point struct{ lat, lon, cosLat float64 }

func mkPoint(lat, lon float64) point {
	const rad = math.Pi / 180
	return point{lat: lat * rad, lon: lon * rad, cosLat: math.Cos(lat * rad)}
}

// haversineKm is the haversine distance between two points.
func haversineKm(a, b point) float64 {
	sp, sl := math.Sin((b.lat-a.lat)/2), math.Sin((b.lon-a.lon)/2)
	h := sp*sp + a.cosLat*b.cosLat*sl*sl
	h = min(max(h, 0), 1)
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(h))
}

// Table is the routing table of one node. It is safe for concurrent use:
// Update may run concurrently with any number of readers.
type Table struct {
	self string
	opts Options
	snap atomic.Pointer[snapshot]
}

// NewTable returns an empty table for the node named self.
func NewTable(self string, opts Options) *Table {
	t := &Table{self: self, opts: opts.sanitized()}
	t.snap.Store(&snapshot{})
	return t
}

// Self returns the name given to NewTable.
func (t *Table) Self() string { return t.self }

// Update replaces the table's contents with a copy of nodes; readers see
// either the old or the new snapshot, never a mix. Concurrent Updates are safe
// (the last to store wins); one membership goroutine should own updates. Nodes with
// non-finite or out-of-range coordinates (|lat| > 90, |lon| > 180) or an empty
// name are dropped; for a repeated name the last entry wins.
func (t *Table) Update(nodes []Node) {
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		if n.Name == "" || !validCoord(n.Lat, n.Lon) {
			continue
		}
		if !(n.Load >= 0) { // NaN or negative
			if math.IsNaN(n.Load) {
				n.Load = 1
			} else {
				n.Load = 0
			}
		}
		n.Load = min(n.Load, 1)
		if i := slices.IndexFunc(out, func(m Node) bool { return m.Name == n.Name }); i >= 0 {
			out[i] = n
			continue
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	pts := make([]point, len(out))
	for i, n := range out {
		pts[i] = mkPoint(n.Lat, n.Lon)
	}
	t.snap.Store(&snapshot{nodes: out, pts: pts})
}

// UpdateFrom is Update(src.Nodes()).
func (t *Table) UpdateFrom(src MemberSource) { t.Update(src.Nodes()) }

// Nodes returns a copy of every node in the table (alive or not), by name.
func (t *Table) Nodes() []Node { return slices.Clone(t.snap.Load().nodes) }

func (t *Table) rank(s *snapshot, i int, c point) Ranked {
	return t.score(s.nodes[i], haversineKm(c, s.pts[i]))
}

func (t *Table) score(n Node, d float64) Ranked {
	s := d + n.Load*t.opts.LoadPenaltyKm
	if n.Suspect {
		s += t.opts.SuspectPenaltyKm
	}
	return Ranked{Node: n, DistanceKm: d, Score: s}
}

// better orders by score, then name, so ties are deterministic.
func better(a, b Ranked) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return a.Name < b.Name
}

// Rank returns the alive nodes ordered best first for a client at (lat, lon).
// An invalid client location returns nil.
func (t *Table) Rank(lat, lon float64) []Ranked {
	return t.AppendRank(nil, lat, lon)
}

// AppendRank is Rank appending to dst, for callers that reuse a buffer.
func (t *Table) AppendRank(dst []Ranked, lat, lon float64) []Ranked {
	if !validCoord(lat, lon) {
		return dst
	}
	base := len(dst)
	s, c := t.snap.Load(), mkPoint(lat, lon)
	for i, n := range s.nodes {
		if n.Alive {
			dst = append(dst, t.rank(s, i, c))
		}
	}
	slices.SortFunc(dst[base:], func(a, b Ranked) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return dst
}

// Nearest returns the best alive node for a client at (lat, lon), keeping
// current (the node the client is served by now) unless the best node's score
// is lower by more than the hysteresis margin. ok is false when no node is
// alive or the location is invalid. It does not allocate.
func (t *Table) Nearest(lat, lon float64, current string) (Ranked, bool) {
	if !validCoord(lat, lon) {
		return Ranked{}, false
	}
	r, _, _, ok := t.nearest(t.snap.Load(), mkPoint(lat, lon), current)
	return r, ok
}

// nearest is Nearest on one snapshot; it also returns current's entry (alive
// or not) when current is in the table.
func (t *Table) nearest(s *snapshot, c point, current string) (choice, cur Ranked, haveCur, ok bool) {
	var best Ranked
	haveBest := false
	for i, n := range s.nodes {
		if !n.Alive && n.Name != current {
			continue
		}
		r := t.rank(s, i, c)
		if n.Name == current && current != "" {
			cur, haveCur = r, true
		}
		if n.Alive && (!haveBest || better(r, best)) {
			best, haveBest = r, true
		}
	}
	if !haveBest {
		return Ranked{}, cur, haveCur, false
	}
	if haveCur && cur.Alive && cur.Name != best.Name {
		margin := max(t.opts.HysteresisKm, t.opts.HysteresisRatio*cur.Score)
		if best.Score+margin >= cur.Score {
			return cur, cur, true, true
		}
	}
	return best, cur, haveCur, true
}

// Lookup returns the named node ranked for (lat, lon), alive or not; with an
// invalid location its DistanceKm and Score are +Inf. ok is false when the
// node is unknown.
func (t *Table) Lookup(name string, lat, lon float64) (Ranked, bool) {
	s := t.snap.Load()
	for i, n := range s.nodes {
		if n.Name == name {
			if !validCoord(lat, lon) {
				return Ranked{Node: n, DistanceKm: math.Inf(1), Score: math.Inf(1)}, true
			}
			return t.rank(s, i, mkPoint(lat, lon)), true
		}
	}
	return Ranked{}, false
}

// DistanceKm returns the great-circle distance in km between two points given
// in degrees, by the haversine formula on a sphere of radius EarthRadiusKm.
// For finite inputs the result is finite, symmetric and within [0, π·R].
func DistanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	return haversineKm(mkPoint(lat1, lon1), mkPoint(lat2, lon2))
}

// Policy modes.
const (
	ModeLocal    = "local"
	ModeRedirect = "redirect"
)

// ErrInvalidPolicy is wrapped by Policy.Validate.
var ErrInvalidPolicy = errors.New("routing: invalid policy")

// Policy says whether a node serves every request itself (ModeLocal, the
// default) or redirects far clients to a nearer region (ModeRedirect). It is a
// value type, safe to copy and use concurrently.
type Policy struct {
	Mode        string
	ThresholdKm float64 // redirect only clients farther than this from self
}

// Validate reports an unknown mode or a negative or non-finite threshold.
func (p Policy) Validate() error {
	switch p.Mode {
	case "", ModeLocal, ModeRedirect:
	default:
		return fmt.Errorf("policy mode %q: %w (want %q or %q)", p.Mode, ErrInvalidPolicy, ModeLocal, ModeRedirect)
	}
	if !(p.ThresholdKm >= 0) || math.IsInf(p.ThresholdKm, 1) {
		return fmt.Errorf("policy threshold_km %v: %w (want a finite value >= 0)", p.ThresholdKm, ErrInvalidPolicy)
	}
	return nil
}

// Decide chooses where the request is served. target is self's entry (or the
// redirect target when redirect is true); when self is not in the table the
// target carries only its name, and without a valid location its DistanceKm
// and Score are +Inf. An empty self means the Table's own name.
//
// It redirects only when the mode is ModeRedirect, the client location is
// known (hasLoc), the request was not already redirected (the caller marks
// redirected URLs with rr_hop=1 and passes alreadyRedirected), self is in the
// table and the client is farther than ThresholdKm from it, and another alive
// node with a URL beats self by the hysteresis margin. It never redirects to
// self. A self that is not alive (draining) gets no hysteresis protection.
// An unknown mode behaves as ModeLocal. It does not allocate.
func (p Policy) Decide(t *Table, self string, lat, lon float64, hasLoc bool, alreadyRedirected bool) (target Ranked, redirect bool) {
	if self == "" {
		self = t.self
	}
	if !validCoord(lat, lon) {
		hasLoc = false
	}
	if p.Mode != ModeRedirect || alreadyRedirected || !hasLoc {
		if !hasLoc {
			lat, lon = math.NaN(), math.NaN()
		}
		selfR, known := t.Lookup(self, lat, lon)
		if !known {
			selfR = Ranked{Node: Node{Name: self}}
		}
		return selfR, false
	}
	best, selfR, known, ok := t.nearest(t.snap.Load(), mkPoint(lat, lon), self)
	if !known {
		return Ranked{Node: Node{Name: self}}, false
	}
	if !(selfR.DistanceKm > p.ThresholdKm) {
		return selfR, false
	}
	if !ok || best.Name == self || best.URL == "" {
		return selfR, false
	}
	return best, true
}

func validCoord(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}
