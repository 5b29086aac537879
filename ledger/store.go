package ledger

import (
	"slices"
	"time"
)

// Compact storage helpers: a string arena, an open-addressing index of uint32
// positions, ULID packing and the sliding-window counters used by the fraud
// rules. None of them is safe for concurrent use; the Ledger's mutex guards them.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnvAdd folds s into the FNV-1a 64-bit hash h.
func fnvAdd[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// hashKey is the hash used by the in-memory indexes (FNV-1a plus a final mix so
// that the low bits used by linear probing are well spread).
func hashKey[T string | []byte](s T) uint64 {
	h := fnvAdd(fnvOffset64, s)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// sref refers to a string in an arena: offset<<8 | length (length ≤ 255).
type sref uint64

// arena stores many short strings back to back in one byte slice, so that a
// name costs its bytes plus an 8-byte reference instead of a 16-byte header
// and a separate allocation.
type arena struct{ b []byte }

func (a *arena) add(s string) sref {
	off := len(a.b)
	a.b = append(a.b, s...)
	return sref(uint64(off)<<8 | uint64(len(s)))
}

func (a *arena) bytes(r sref) []byte {
	off := uint64(r >> 8)
	return a.b[off : off+uint64(r&0xff)]
}

func (a *arena) get(r sref) string { return string(a.bytes(r)) }

func (a *arena) eq(r sref, s string) bool { return string(a.bytes(r)) == s }

// hindex maps hashes to uint32 positions with linear probing. It stores no
// keys: callers compare candidates against their own storage. Positions are
// never removed.
type hindex struct {
	slots []uint32 // position+1; 0 is empty
	n     int
}

func (h *hindex) lookup(hash uint64, eq func(uint32) bool) (uint32, bool) {
	if len(h.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(h.slots) - 1)
	for i := hash & mask; ; i = (i + 1) & mask {
		v := h.slots[i]
		if v == 0 {
			return 0, false
		}
		if eq(v - 1) {
			return v - 1, true
		}
	}
}

func (h *hindex) insert(hash uint64, pos uint32, hashOf func(uint32) uint64) {
	if (h.n+1)*4 > len(h.slots)*3 {
		old := h.slots
		size := 16
		if len(old) > 0 {
			size = len(old) * 2
		}
		h.slots = make([]uint32, size)
		for _, v := range old {
			if v != 0 {
				h.place(hashOf(v-1), v)
			}
		}
	}
	h.place(hash, pos+1)
	h.n++
}

// reserve sizes an empty index for n positions.
func (h *hindex) reserve(n int) {
	if h.n != 0 {
		return
	}
	size := 16
	for (n+1)*4 > size*3 {
		size *= 2
	}
	h.slots = make([]uint32, size)
}

func (h *hindex) place(hash uint64, v uint32) {
	mask := uint64(len(h.slots) - 1)
	i := hash & mask
	for h.slots[i] != 0 {
		i = (i + 1) & mask
	}
	h.slots[i] = v
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordDec = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = byte(i)
	}
	return t
}()

// packULID converts a canonical (26 upper-case Crockford characters) ULID to
// its 16 bytes. ok is false for anything else.
func packULID(s string) (id [16]byte, ok bool) {
	if len(s) != 26 || s[0] > '7' {
		return id, false
	}
	var hi, lo uint64
	for i := 0; i < 26; i++ {
		v := crockfordDec[s[i]]
		if v == 0xff {
			return id, false
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	for i := 0; i < 8; i++ {
		id[i] = byte(hi >> (56 - 8*i))
		id[8+i] = byte(lo >> (56 - 8*i))
	}
	return id, true
}

// unpackULID is the inverse of packULID.
func unpackULID(id [16]byte) string {
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(id[i])
		lo = lo<<8 | uint64(id[8+i])
	}
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// window is a two-bucket sliding-window counter packed in a uint64:
// bucket number (32 bits) | count of the current bucket (16) | count of the
// previous bucket (16). The estimate of events in the last width is
// cur + prev*(width-elapsed)/width, the usual sliding-window approximation.
type window uint64

func (w window) bucket() uint32 { return uint32(w >> 32) }

// hit counts one event at now (unix nanoseconds) and returns the estimate of
// events within the last width, this one included. Time going backwards (a new
// leader's clock) counts into the newest bucket.
func (w *window) hit(now, width int64) (window, int64) {
	b := floorDiv(now, width)
	wb := int64(w.bucket())
	cur, prev := uint16(*w>>16), uint16(*w)
	switch {
	case *w == 0:
		cur, prev = 0, 0
	case b == wb+1:
		prev, cur = cur, 0
	case b > wb+1:
		prev, cur = 0, 0
	case b < wb:
		b = wb
	}
	if cur < 0xffff {
		cur++
	}
	elapsed := now - b*width
	if elapsed < 0 || elapsed > width {
		elapsed = width
	}
	*w = window(uint64(uint32(b))<<32 | uint64(cur)<<16 | uint64(prev))
	return *w, int64(cur) + int64(prev)*(width-elapsed)/width
}

// w32Buckets is the range of window32's bucket counter.
const w32Buckets = 1 << 12

// window32 is the compact window of the per-IP and per-device maps: bucket
// number modulo 4096 (12 bits) | current count (10) | previous count (10).
// Counts saturate at 1023. The maps are cleared before bucket numbers could
// alias (see campState.hitKey).
type window32 uint32

// age returns how many buckets ago (modulo 4096) w was last counted.
func (w window32) age(b int64) int64 {
	return (b - int64(w>>20)) & (w32Buckets - 1)
}

// hit is window.hit for window32.
func (w *window32) hit(now, width int64) int64 {
	b := floorDiv(now, width)
	cur, prev := int64(*w>>10&1023), int64(*w&1023)
	switch age := w.age(b); {
	case *w == 0:
		cur, prev = 0, 0
	case age == 0:
	case age == 1:
		prev, cur = cur, 0
	case age < w32Buckets/2:
		prev, cur = 0, 0
	default: // time went backwards: count into the newest bucket
		b += w32Buckets - age
	}
	cur = min(cur+1, 1023)
	elapsed := now - b*width
	if elapsed < 0 || elapsed > width {
		elapsed = width
	}
	*w = window32(uint32(b&(w32Buckets-1))<<20 | uint32(cur)<<10 | uint32(prev))
	return cur + prev*(width-elapsed)/width
}

// unixSeconds returns t as unix seconds in a uint32 (1 for earlier times, so 0
// can mean none).
func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 1 {
		return 1
	}
	if s > 0xffffffff {
		return 0xffffffff
	}
	return uint32(s)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// wtable is an open-addressing set of window32 counters keyed by a 32-bit
// hash tag, packed as tag<<32 | window in one uint64 per slot (0: empty), so
// a counted IP or device costs 8 bytes per slot. Two keys with the same tag
// (about 1 in 4 billion per pair) share a counter; like a count-min sketch
// that can only over-count, i.e. hold, never under-count.
type wtable struct {
	slots []uint64
	n     int
}

func wslot(tag uint32, mask uint64) uint64 {
	return (uint64(tag) * 0x9e3779b97f4a7c15 >> 20) & mask
}

// hit counts one event for the key with hash h and returns the estimate.
func (t *wtable) hit(h uint64, now, width int64) int64 {
	tag := uint32(h >> 32)
	if (t.n+1)*4 > len(t.slots)*3 {
		t.rebuild(len(t.slots)*2, nil)
	}
	mask := uint64(len(t.slots) - 1)
	i := wslot(tag, mask)
	for t.slots[i] != 0 && uint32(t.slots[i]>>32) != tag {
		i = (i + 1) & mask
	}
	if t.slots[i] == 0 {
		t.n++
	}
	w := window32(t.slots[i])
	est := w.hit(now, width)
	t.slots[i] = uint64(tag)<<32 | uint64(w)
	return est
}

// rebuild re-inserts the entries that keep says to keep (all when keep is
// nil) into size slots (at least 16, grown to hold them at load ≤ 3/4).
func (t *wtable) rebuild(size int, keep func(window32) bool) {
	old := t.slots
	kept := t.n
	if keep != nil {
		kept = 0
		for _, s := range old {
			if s != 0 && keep(window32(s)) {
				kept++
			}
		}
	}
	size = max(size, 16)
	for (kept+1)*4 > size*3 {
		size *= 2
	}
	t.slots, t.n = make([]uint64, size), 0
	for _, s := range old {
		if s != 0 && (keep == nil || keep(window32(s))) {
			t.put(s)
		}
	}
}

// put inserts a packed entry whose tag is not present yet.
func (t *wtable) put(s uint64) {
	mask := uint64(len(t.slots) - 1)
	i := wslot(uint32(s>>32), mask)
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
	t.n++
}

// entries returns the packed entries sorted (for snapshots).
func (t *wtable) entries() []uint64 {
	out := make([]uint64, 0, t.n)
	for _, s := range t.slots {
		if s != 0 {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
