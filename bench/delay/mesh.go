package delay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Node is one local node of a simulated multi-region cluster.
type Node struct {
	// Name identifies the node; Region picks its RTTs; Addr is the real
	// host:port of the TCP service to be reached through the mesh.
	Name, Region, Addr string
}

// Mesh holds one Proxy per ordered pair of nodes in different regions, so
// that a connection that node A opens to node B pays the RTT between their
// regions (Delay = RTT/2 each way). Nodes of the same region talk directly.
// A Mesh is safe for concurrent use; Close releases every proxy.
type Mesh struct {
	addrs   map[string]string    // node name → real address
	byAddr  map[string]string    // real address → node name
	proxies map[[2]string]*Proxy // (from, to) node names
}

// NewMesh starts the proxies for nodes with RTTs as returned by ParseRTT.
// Every pair of distinct regions among the nodes must have an RTT. Node
// names and addresses must be unique.
func NewMesh(nodes []Node, rtt map[[2]string]time.Duration, logger *slog.Logger) (*Mesh, error) {
	m := &Mesh{addrs: make(map[string]string), byAddr: make(map[string]string),
		proxies: make(map[[2]string]*Proxy)}
	for _, n := range nodes {
		if n.Name == "" || n.Addr == "" {
			return nil, fmt.Errorf("%w: mesh node %+v needs a name and an address", ErrInvalidConfig, n)
		}
		if _, dup := m.addrs[n.Name]; dup {
			return nil, fmt.Errorf("%w: mesh node %q twice", ErrInvalidConfig, n.Name)
		}
		if other, dup := m.byAddr[n.Addr]; dup {
			return nil, fmt.Errorf("%w: mesh nodes %q and %q share address %s", ErrInvalidConfig, other, n.Name, n.Addr)
		}
		m.addrs[n.Name], m.byAddr[n.Addr] = n.Addr, n.Name
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from.Name == to.Name || from.Region == to.Region {
				continue
			}
			d, ok := rtt[[2]string{from.Region, to.Region}]
			if !ok {
				_ = m.Close()
				return nil, fmt.Errorf("%w: no rtt between regions %q and %q", ErrInvalidConfig, from.Region, to.Region)
			}
			p, err := New(Config{Target: to.Addr, Delay: d / 2, Logger: logger})
			if err != nil {
				_ = m.Close()
				return nil, fmt.Errorf("mesh proxy %s→%s: %w", from.Name, to.Name, err)
			}
			m.proxies[[2]string{from.Name, to.Name}] = p
		}
	}
	return m, nil
}

// Route returns the address node from should dial to reach addr: the
// proxy's when addr is a mesh node in another region, else addr itself.
// Use it in the dialer of the component under test.
func (m *Mesh) Route(from, addr string) string {
	to, ok := m.byAddr[addr]
	if !ok {
		return addr
	}
	if p, ok := m.proxies[[2]string{from, to}]; ok {
		return p.Addr()
	}
	return addr
}

// Proxy returns the proxy from node from to node to, if they are in
// different regions (for example to change its delay during a drill).
func (m *Mesh) Proxy(from, to string) (*Proxy, bool) {
	p, ok := m.proxies[[2]string{from, to}]
	return p, ok
}

// Close closes every proxy of the mesh.
func (m *Mesh) Close() error {
	var errs []error
	for _, p := range m.proxies {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
