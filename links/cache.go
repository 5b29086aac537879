package links

import (
	"crypto/subtle"
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
)

// codeCacheSlots is the number of slots of a keyring's verified-code cache
// (a power of two).
//
// The cache only has to hold a node's hot set of share codes: clicks follow
// a heavy-tailed distribution, and a miss costs little more than the
// uncached path (one HMAC, about 0.2 µs, and a slot write). With W hot codes
// in a direct-mapped table of N slots, about 1-exp(-W/N) of them share a slot
// with another hot code, so 8192 slots keep collisions under 10% for ~850 hot
// codes and under 22% for ~2000. The table is a fixed 320 KiB (40-byte slots
// without pointers, so the GC does not scan them) allocated with the keyring;
// 4096 slots would collide about twice as often, 16384 would double memory
// for a tail of codes that rarely repeat.
const codeCacheSlots = 8192

// codeCache remembers codes whose tag checked out, so that a repeated genuine
// code is verified without an HMAC. It is a bounded, direct-mapped table
// indexed by a seeded hash of the code's 16 characters: the seed is random per
// keyring, so clients cannot aim codes at a slot. Only genuine codes are
// inserted (see Keyring.VerifyCode), so forged traffic can neither grow
// memory nor evict entries. An insert replaces whatever the slot held.
//
// Slots are fixed-size and updated in place under a sequence lock, so neither
// lookups nor inserts allocate. Readers never wait: a reader that overlaps a
// write sees a miss and verifies the code itself; a writer that finds another
// writer in the slot skips its insert.
//
// Entries record genuineness only; retirement depends on the verification
// time and is checked on every hit. The keyring is immutable, so entries
// never go stale.
type codeCache struct {
	seed  maphash.Seed
	mask  uint64
	slots []codeSlot
}

// codeSlot is one cached code. seq is 0 while the slot is empty, odd while a
// writer fills it, and grows by 2 with every completed write, so a reader
// that loads the same nonzero even seq before and after the other fields has
// read one entry whole. Every field is atomic (sequentially consistent), which
// is what makes the sequence lock sound in Go's memory model.
type codeSlot struct {
	seq    atomic.Uint64
	raw    [2]atomic.Uint64 // the code's 16 characters, little-endian
	hi, lo atomic.Uint64    // the code's 95-bit value
}

// newCodeCache returns an empty cache of n slots; n must be a power of two.
func newCodeCache(n int) *codeCache {
	if n <= 0 || n&(n-1) != 0 {
		panic("links: code cache size is not a power of two")
	}
	return &codeCache{seed: maphash.MakeSeed(), mask: uint64(n - 1), slots: make([]codeSlot, n)}
}

// lookup returns the slot of code, which must be CodeLen bytes, and the value
// cached for code, if the slot holds exactly code (compared in full, in
// constant time). It does not allocate.
func (c *codeCache) lookup(code []byte) (*codeSlot, value, bool) {
	sl := &c.slots[maphash.Bytes(c.seed, code)&c.mask]
	s1 := sl.seq.Load()
	r0, r1 := sl.raw[0].Load(), sl.raw[1].Load()
	v := value{hi: sl.hi.Load(), lo: sl.lo.Load()}
	s2 := sl.seq.Load()
	x := (r0 ^ binary.LittleEndian.Uint64(code[:8])) | (r1 ^ binary.LittleEndian.Uint64(code[8:CodeLen]))
	same := subtle.ConstantTimeEq(int32(uint32(x)|uint32(x>>32)), 0) == 1
	if s1 == 0 || s1&1 != 0 || s1 != s2 || !same {
		return sl, value{}, false
	}
	return sl, v, true
}

// insert caches v, the value of the genuine code code, in sl (from lookup of
// the same code), replacing the slot's entry. It gives up if another writer
// holds the slot.
func (c *codeCache) insert(sl *codeSlot, code []byte, v value) {
	s := sl.seq.Load()
	if s&1 != 0 || !sl.seq.CompareAndSwap(s, s+1) {
		return
	}
	sl.raw[0].Store(binary.LittleEndian.Uint64(code[:8]))
	sl.raw[1].Store(binary.LittleEndian.Uint64(code[8:CodeLen]))
	sl.hi.Store(v.hi)
	sl.lo.Store(v.lo)
	sl.seq.Store(s + 2)
}
