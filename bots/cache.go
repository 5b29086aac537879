package bots

import (
	"hash/maphash"
	"sync/atomic"
)

// Verdict cache. Real traffic repeats a few user agents (the current builds
// of a handful of apps and browsers) over and over, so each Matcher keeps a
// direct-mapped table of recent verdicts keyed by a 64-bit maphash of the
// user agent under a seed drawn at random for that Matcher. A hit costs one
// hash of the user agent and one atomic load; there are no locks and no
// allocation on hit or insert.
//
// Each slot is one atomic 64-bit word holding a whole entry: the hash bits
// above the slot index (the index bits are implied by the slot's position,
// so the full 64-bit hash is compared), a valid bit and the verdict bit. A
// word is loaded and stored in one piece, so a reader can never see half of
// one entry and half of another; concurrent inserts into one slot leave one
// of them, and a reader sees either an entry whose hash matches, whose
// verdict is then right, or anything else, which is a miss. A zero word is
// an empty slot.
//
// A hit on a different user agent with the same 64-bit hash would return
// that user agent's verdict: one click counted or not counted wrongly. With
// a random per-Matcher seed that happens with probability about 2^-64 per
// lookup, and it gains an attacker nothing, since a user agent is the
// client's to choose and could as well be a human's or a bot's directly.

// cacheSlots is the number of slots of a Matcher's cache (32 KiB).
const cacheSlots = 4096

// The low bits of an entry, which lie within the slot index bits.
const (
	cacheVerdict = 1 << 0 // the cached verdict
	cacheValid   = 1 << 1 // the slot holds an entry
)

// initCache gives m an empty cache of n slots, n a power of two of at
// least 4 so that the index bits cover cacheVerdict and cacheValid.
func (m *Matcher) initCache(n int) {
	if n < 4 || n&(n-1) != 0 {
		panic("bots: cache size must be a power of two of at least 4")
	}
	m.seed = maphash.MakeSeed()
	m.slots = make([]atomic.Uint64, n)
	m.mask = uint64(n - 1)
}

// cached returns the verdict remembered for hash h, if any.
func (m *Matcher) cached(h uint64) (verdict, ok bool) {
	w := m.slots[h&m.mask].Load()
	if w&^cacheVerdict != h&^m.mask|cacheValid {
		return false, false
	}
	return w&cacheVerdict != 0, true
}

// remember records verdict v for hash h, replacing the slot's entry.
func (m *Matcher) remember(h uint64, v bool) {
	w := h&^m.mask | cacheValid
	if v {
		w |= cacheVerdict
	}
	m.slots[h&m.mask].Store(w)
}
