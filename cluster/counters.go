package cluster

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"
)

// Limits of the counter state, enforced when adding and when decoding.
const (
	MaxCounterKeys   = 4096 // keys per node
	MaxCounterKeyLen = 128  // bytes per key
	maxCounterNodes  = 1024
	counterVersion   = 1
)

// Counters holds per-node grow-only counters. Each node only adds to its
// own; gossip (memberlist push-pull) spreads every node's latest values and a
// merge keeps the maximum per (node, key), so Total converges to the sum over
// all nodes. Dead nodes' counts are kept. All methods are safe for concurrent
// use.
type Counters struct {
	self string
	mu   sync.Mutex
	vals map[string]map[string]uint64 // node -> key -> value
}

func newCounters(self string) *Counters {
	return &Counters{self: self, vals: map[string]map[string]uint64{self: {}}}
}

// Add adds n to this node's counter key. Keys longer than MaxCounterKeyLen,
// or new keys beyond MaxCounterKeys, are refused with an error.
func (c *Counters) Add(key string, n uint64) error {
	if len(key) > MaxCounterKeyLen {
		return fmt.Errorf("cluster: counter key of %d bytes, limit %d", len(key), MaxCounterKeyLen)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	own := c.vals[c.self]
	if _, ok := own[key]; !ok && len(own) >= MaxCounterKeys {
		return fmt.Errorf("cluster: counter %q: node already has %d keys", key, MaxCounterKeys)
	}
	own[key] += n
	return nil
}

// Total returns the sum of the latest known value of key over all nodes.
func (c *Counters) Total(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t uint64
	for _, m := range c.vals {
		t += m[key]
	}
	return t
}

// Totals returns the sums of every key over all nodes.
func (c *Counters) Totals() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64)
	for _, m := range c.vals {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// Local returns this node's own value of key.
func (c *Counters) Local(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.vals[c.self][key]
}

// encode returns the versioned encoding of all known counters.
func (c *Counters) encode() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	nodes := make([]string, 0, len(c.vals))
	for n := range c.vals {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	b := []byte{counterVersion}
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	for _, n := range nodes {
		b = appendString(b, n)
		m := c.vals[n]
		b = binary.AppendUvarint(b, uint64(len(m)))
		for k, v := range m {
			b = appendString(b, k)
			b = binary.AppendUvarint(b, v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte, max int) (string, []byte, error) {
	l, k := binary.Uvarint(b)
	if k <= 0 || l > uint64(max) || l > uint64(len(b)-k) {
		return "", nil, errMalformed
	}
	return string(b[k : k+int(l)]), b[k+int(l):], nil
}

// decodeCounters decodes what encode wrote.
func decodeCounters(b []byte) (map[string]map[string]uint64, error) {
	if len(b) == 0 || b[0] != counterVersion {
		return nil, fmt.Errorf("counter state version: %w", errMalformed)
	}
	b = b[1:]
	nn, k := binary.Uvarint(b)
	if k <= 0 || nn > maxCounterNodes {
		return nil, fmt.Errorf("counter node count: %w", errMalformed)
	}
	b = b[k:]
	out := make(map[string]map[string]uint64, nn)
	for i := uint64(0); i < nn; i++ {
		node, rest, err := readString(b, 256)
		if err != nil {
			return nil, fmt.Errorf("counter node %d name: %w", i, err)
		}
		b = rest
		nk, k := binary.Uvarint(b)
		if k <= 0 || nk > MaxCounterKeys {
			return nil, fmt.Errorf("counter node %q key count: %w", node, errMalformed)
		}
		b = b[k:]
		m := make(map[string]uint64, nk)
		for j := uint64(0); j < nk; j++ {
			key, rest, err := readString(b, MaxCounterKeyLen)
			if err != nil {
				return nil, fmt.Errorf("counter node %q key %d: %w", node, j, err)
			}
			b = rest
			v, k := binary.Uvarint(b)
			if k <= 0 {
				return nil, fmt.Errorf("counter node %q value %d: %w", node, j, errMalformed)
			}
			b = b[k:]
			m[key] = v
		}
		out[node] = m
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("counter state: %d trailing bytes: %w", len(b), errMalformed)
	}
	return out, nil
}

// merge takes the maximum per (node, key) of remote state. That includes
// this node's own counters, so a restarted node resumes from what its peers
// remember instead of counting from zero.
func (c *Counters) merge(remote map[string]map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for node, m := range remote {
		cur := c.vals[node]
		if cur == nil {
			if len(c.vals) >= maxCounterNodes {
				continue
			}
			cur = make(map[string]uint64, len(m))
			c.vals[node] = cur
		}
		for k, v := range m {
			if _, ok := cur[k]; !ok && len(cur) >= MaxCounterKeys {
				continue
			}
			if v > cur[k] {
				cur[k] = v
			}
		}
	}
}
