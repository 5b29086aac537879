package geo

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// The point cache remembers, per file, the Point that LookupPoint derives
// from the record at a data-section offset, so that the many addresses that
// share a record (every network of a city points at the same one) decode it
// once instead of on every request. Decoding the record is ~70% of
// LookupPoint; the tree walk that finds the offset is still done each time.
//
// It needs no invalidation: a file is immutable once parsed, so the Point
// for an offset never changes, and Reload never mutates a file but swaps in
// new files, each with its own empty cache; the old cache goes away with its
// file once the lookups still using it return.
//
// The table is direct-mapped (a hash of the offset picks one slot) and
// bounded: a newer record evicts whatever the slot held. Slots hold the
// Point by value in atomic words guarded by a sequence counter (a seqlock),
// so neither a hit nor an insert allocates, and readers never wait: a read
// that overlaps a write is a miss and decodes the record instead. Writers
// that find a slot being written skip the insert rather than wait.
const (
	// maxPointCacheSlots bounds the table: 16,384 slots of 32 bytes are
	// 512 KiB per file. A GeoLite2-City file has 100k+ distinct records,
	// but traffic concentrates on the records of populous cities; 16k
	// slots hold a hot set of a few thousand records with few collisions
	// (about 1 - e^(-n/16384) of n hot records share a slot: 11% at 2,000)
	// at a size that is small next to the file itself (tens of MB held in
	// memory) and that mostly stays in the CPU caches. A larger table
	// would mostly hold the cold tail and thrash those caches.
	maxPointCacheSlots = 1 << 14
	// minPointCacheSlots is the smallest table, for tiny files.
	minPointCacheSlots = 1 << 6
	// pointCacheBytesPerSlot sizes the table of a small file: one slot per
	// this many bytes of data section. The smallest useful record (a flat
	// one with only a country_code, its key a pointer) takes about 8 bytes,
	// and generated City records about 40, so every file gets at least
	// two slots per record until the cap, while the demo file, with a few
	// dozen records in 1 KB, gets 256 slots (8 KiB), not 512 KiB.
	pointCacheBytesPerSlot = 4
)

// pointCache is the direct-mapped table of one file. The zero value is a
// disabled cache (every get misses, every put is dropped).
type pointCache struct {
	slots []pointSlot // len is a power of two
	shift uint8       // 64 - log2(len(slots))
}

// pointSlot is one cache entry. All fields are accessed atomically. seq is
// odd while a writer fills the slot and grows by two per completed write;
// key is offset+1 (0: empty); a and b pack the Point (see packPoint).
type pointSlot struct {
	seq  atomic.Uint64
	key  atomic.Uint64
	a, b atomic.Uint64
}

// newPointCache returns a table of slots slots rounded up to a power of
// two, at least one and at most maxPointCacheSlots.
func newPointCache(slots int) pointCache {
	slots = max(min(slots, maxPointCacheSlots), 1)
	n := 1 << bits.Len(uint(slots-1)) // next power of two >= slots
	return pointCache{slots: make([]pointSlot, n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
}

// pointCacheSlots returns the table size for a data section of n bytes.
func pointCacheSlots(n int) int {
	return max(n/pointCacheBytesPerSlot, minPointCacheSlots)
}

// slot returns the slot for off. Offsets of equal-size records form an
// arithmetic progression, which plain Fibonacci hashing spreads badly for
// some strides (96 bytes: 1,024 records in 488 of 1,024 slots); a second
// multiply after folding the high bits down spreads every stride like a
// random function (~1 - 1/e of the slots used).
func (c *pointCache) slot(off uintptr) *pointSlot {
	if len(c.slots) == 0 {
		return nil
	}
	const phi = 0x9e3779b97f4a7c15
	h := uint64(off) * phi
	h = (h ^ h>>29) * phi
	// The top log2(len) bits; shift is 64 (giving 0) for a one-slot table.
	return &c.slots[h>>c.shift]
}

// get returns the cached Point for off, or ok=false on a miss.
func (c *pointCache) get(off uintptr) (p Point, ok bool) {
	s := c.slot(off)
	if s == nil {
		return Point{}, false
	}
	seq := s.seq.Load()
	if seq&1 != 0 {
		return Point{}, false // being written
	}
	key, a, b := s.key.Load(), s.a.Load(), s.b.Load()
	if s.seq.Load() != seq || key != uint64(off)+1 {
		return Point{}, false // overwritten meanwhile, or another offset
	}
	return unpackPoint(a, b), true
}

// put stores p for off, unless another writer is filling the same slot.
func (c *pointCache) put(off uintptr, p Point) {
	s := c.slot(off)
	if s == nil {
		return
	}
	seq := s.seq.Load()
	if seq&1 != 0 || !s.seq.CompareAndSwap(seq, seq+1) {
		return
	}
	a, b := packPoint(p)
	s.key.Store(uint64(off) + 1)
	s.a.Store(a)
	s.b.Store(b)
	s.seq.Store(seq + 2)
}

// Flag bits of the second word of a packed Point.
const (
	packOK = 1 << (32 + iota)
	packHasCoords
	packCentroid
)

// packPoint packs p into two words: a holds the codes and the latitude, b
// the longitude and the flags.
func packPoint(p Point) (a, b uint64) {
	a = uint64(p.Country[0]) | uint64(p.Country[1])<<8 |
		uint64(p.Continent[0])<<16 | uint64(p.Continent[1])<<24 |
		uint64(math.Float32bits(p.Lat))<<32
	b = uint64(math.Float32bits(p.Lon))
	if p.OK {
		b |= packOK
	}
	if p.HasCoords {
		b |= packHasCoords
	}
	if p.Centroid {
		b |= packCentroid
	}
	return a, b
}

// unpackPoint reverses packPoint.
func unpackPoint(a, b uint64) Point {
	return Point{
		Country:   [2]byte{byte(a), byte(a >> 8)},
		Continent: [2]byte{byte(a >> 16), byte(a >> 24)},
		Lat:       math.Float32frombits(uint32(a >> 32)),
		Lon:       math.Float32frombits(uint32(b)),
		OK:        b&packOK != 0,
		HasCoords: b&packHasCoords != 0,
		Centroid:  b&packCentroid != 0,
	}
}
