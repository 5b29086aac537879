package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// Meta is the metadata a node gossips about itself. It is a value type;
// copies are independent.
type Meta struct {
	Name        string  `json:"name"`
	Region      string  `json:"region"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	PublicURL   string  `json:"public_url"`
	ClusterAddr string  `json:"cluster_addr"`
	Voter       bool    `json:"voter"`
	Role        string  `json:"role"` // leader, follower, nonvoter or candidate
	Load        float64 `json:"load"`
	Version     string  `json:"version"`
	// HasState is true once the node has raft state (it was bootstrapped or
	// joined a raft configuration); bootstrap never happens while any alive
	// member reports it.
	HasState bool `json:"has_state"`
}

// Roles reported in Meta.Role.
const (
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleNonvoter  = "nonvoter"
	RoleCandidate = "candidate"
)

// ErrMetaTooLarge reports node metadata over memberlist's MetaMaxSize.
var ErrMetaTooLarge = errors.New("cluster: node metadata too large")

// wireMeta is the compact gossip form of Meta.
type wireMeta struct {
	Region      string  `json:"r,omitempty"`
	Lat         float64 `json:"la,omitempty"`
	Lon         float64 `json:"lo,omitempty"`
	PublicURL   string  `json:"u,omitempty"`
	ClusterAddr string  `json:"c,omitempty"`
	Voter       bool    `json:"v,omitempty"`
	Role        string  `json:"ro,omitempty"`
	Load        float64 `json:"l,omitempty"`
	Version     string  `json:"ve,omitempty"`
	HasState    bool    `json:"s,omitempty"`
	Leaving     bool    `json:"x,omitempty"` // set just before a graceful Leave
}

// encodeMeta encodes m for gossip (the name travels as the memberlist node
// name) and checks memberlist's size limit.
func encodeMeta(m Meta) ([]byte, error) { return encodeWireMeta(m, false) }

func encodeWireMeta(m Meta, leaving bool) ([]byte, error) {
	if math.IsNaN(m.Load) || math.IsInf(m.Load, 0) {
		m.Load = 0
	}
	b, err := json.Marshal(wireMeta{
		Region: m.Region, Lat: m.Lat, Lon: m.Lon, PublicURL: m.PublicURL,
		ClusterAddr: m.ClusterAddr, Voter: m.Voter, Role: m.Role, Load: m.Load,
		Version: m.Version, HasState: m.HasState, Leaving: leaving,
	})
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node metadata is %d bytes, limit %d: %w", len(b), memberlist.MetaMaxSize, ErrMetaTooLarge)
	}
	return b, nil
}

// decodeMeta decodes gossiped metadata of the named node and whether it
// announced a graceful leave.
func decodeMeta(name string, b []byte) (Meta, bool, error) {
	var w wireMeta
	if len(b) > 0 {
		if err := json.Unmarshal(b, &w); err != nil {
			return Meta{Name: name}, false, fmt.Errorf("decode metadata of %q: %w", name, err)
		}
	}
	return Meta{
		Name: name, Region: w.Region, Lat: w.Lat, Lon: w.Lon, PublicURL: w.PublicURL,
		ClusterAddr: w.ClusterAddr, Voter: w.Voter, Role: w.Role, Load: w.Load,
		Version: w.Version, HasState: w.HasState,
	}, w.Leaving, nil
}

// checkMetaWorstCase encodes m with the longest role and load so that later
// updates of those fields cannot overflow the limit.
func checkMetaWorstCase(m Meta) error {
	m.Role = RoleCandidate
	m.Load = -1.2345678901234567e-300
	m.HasState = true
	_, err := encodeWireMeta(m, true)
	return err
}
