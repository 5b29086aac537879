package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by this package. Verification errors are returned
// unwrapped (so the hot path does not allocate); check them with errors.Is.
var (
	// ErrMalformed reports a code or token that does not parse: wrong length,
	// a character outside the alphabet, a value out of range, a bad layout.
	ErrMalformed = errors.New("links: malformed")
	// ErrForged reports a well-formed code or token whose tag does not match,
	// or whose key generation is not in the keyring.
	ErrForged = errors.New("links: forged or unknown key")
	// ErrRetired reports a genuine code or token whose key generation was
	// retired at or before the verification time.
	ErrRetired = errors.New("links: key generation retired")
	// ErrInvalid reports an invalid argument to a constructor or encoder.
	ErrInvalid = errors.New("links: invalid argument")
)

// MinKeyLen is the minimum length in bytes of a master key.
const MinKeyLen = 32

// MasterKey is one generation of the cluster's master secret, as read from
// the node configuration.
type MasterKey struct {
	// Gen is the key generation (0-255); codes carry Gen mod 4.
	Gen uint8
	// Key is the secret, at least MinKeyLen bytes. NewKeyring copies it.
	Key []byte
	// RetireAt is when codes of this generation stop verifying; the zero
	// time means never.
	RetireAt time.Time
}

// slot is the key that verifies codes of one generation residue (gen mod 4).
type slot struct {
	gen      uint8
	key      []byte
	retireAt time.Time
	// pages caches derived campaign keys: pages[campaign>>8][campaign&0xff].
	pages [256]atomic.Pointer[keyPage]
}

type keyPage [256]atomic.Pointer[campaignKey]

// retired reports whether the slot's generation is retired at now.
func (s *slot) retired(now time.Time) bool {
	return !s.retireAt.IsZero() && !now.Before(s.retireAt)
}

// cached returns the cached derived key of campaign, or nil.
func (s *slot) cached(campaign uint16) *campaignKey {
	p := s.pages[campaign>>8].Load()
	if p == nil {
		return nil
	}
	return p[campaign&0xff].Load()
}

// store caches ck as the key of campaign unless another goroutine won the
// race, and returns the cached key.
func (s *slot) store(campaign uint16, ck *campaignKey) *campaignKey {
	pp := &s.pages[campaign>>8]
	p := pp.Load()
	if p == nil {
		np := new(keyPage)
		if pp.CompareAndSwap(nil, np) {
			p = np
		} else {
			p = pp.Load()
		}
	}
	cp := &p[campaign&0xff]
	if cp.CompareAndSwap(nil, ck) {
		return ck
	}
	return cp.Load()
}

// campaignKey returns the derived key of campaign, deriving and caching it
// on first use. Only issuing paths call it: verification caches a key only
// once a genuine tag proves the campaign real (see keyFor), so forged codes
// with arbitrary campaign numbers cannot fill the cache.
func (s *slot) campaignKey(campaign uint16) *campaignKey {
	if ck := s.cached(campaign); ck != nil {
		return ck
	}
	return s.store(campaign, newCampaignKey(deriveCampaignKey(s.key, campaign)))
}

// keyFor returns the derived key of campaign for verification and whether
// it is fresh (derived now, not cached); the caller caches a fresh key with
// store only after a tag made with it checks out.
func (s *slot) keyFor(campaign uint16) (ck *campaignKey, fresh bool) {
	if ck := s.cached(campaign); ck != nil {
		return ck, false
	}
	return newCampaignKey(deriveCampaignKey(s.key, campaign)), true
}

// deriveCampaignKey returns HMAC-SHA256(master, "refrouter/v1/campaign/"+decimal(campaign)).
func deriveCampaignKey(master []byte, campaign uint16) [sha256.Size]byte {
	m := hmac.New(sha256.New, master)
	msg := strconv.AppendUint([]byte("refrouter/v1/campaign/"), uint64(campaign), 10)
	m.Write(msg)
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// campaignKey is a derived campaign key with a pool of HMAC states keyed by
// it, so that tagging reuses hash state instead of allocating.
type campaignKey struct {
	pool sync.Pool // of *macState
}

func newCampaignKey(key [sha256.Size]byte) *campaignKey {
	ck := &campaignKey{}
	ck.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key[:])} }
	return ck
}

func (ck *campaignKey) get() *macState   { return ck.pool.Get().(*macState) }
func (ck *campaignKey) put(st *macState) { ck.pool.Put(st) }

// macState is one HMAC instance with scratch buffers that live on the heap
// with it, so passing them through the hash.Hash interface does not allocate.
// A macState is used by one goroutine at a time (between get and put).
type macState struct {
	h   hash.Hash
	msg [8]byte
	sum [sha256.Size]byte
	buf [maxRawClick]byte
}

// mac returns HMAC(p) in st.sum. p may alias st.buf or st.msg.
func (st *macState) mac(p []byte) []byte {
	st.h.Reset()
	st.h.Write(p)
	return st.h.Sum(st.sum[:0])
}

// codeTag returns the 42-bit tag of the 53 non-tag bits n53.
func (st *macState) codeTag(n53 uint64) uint64 {
	binary.BigEndian.PutUint64(st.msg[:], n53)
	sum := st.mac(st.msg[1:])
	return binary.BigEndian.Uint64(sum[:8]) >> (64 - tagBits)
}

// Keyring holds the cluster's master keys. One generation is current and
// issues codes; every generation that is the newest of its residue mod 4
// verifies them until its RetireAt. A Keyring is immutable after
// NewKeyring apart from its internal caches (derived campaign keys and
// recently verified codes, which the immutable keys never invalidate), and is
// safe for concurrent use by many goroutines.
type Keyring struct {
	current uint8
	slots   [4]*slot
	b64     *base64.Encoding // strict raw URL encoding
	cache   *codeCache       // verified codes; nil disables the cache
}

// NewKeyring validates keys and returns a keyring that issues with
// generation current. Keys must be at least MinKeyLen bytes with unique
// generations, and current must be present and be the newest generation of
// its residue mod 4 (otherwise its codes could not verify). Older keys of the
// same residue as a newer one are kept out: codes carry only gen mod 4.
func NewKeyring(keys []MasterKey, current uint8) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("new keyring: no master keys: %w", ErrInvalid)
	}
	k := &Keyring{current: current, b64: base64.RawURLEncoding.Strict()}
	seen := make(map[uint8]bool, len(keys))
	for i, mk := range keys {
		if len(mk.Key) < MinKeyLen {
			return nil, fmt.Errorf("new keyring: key %d (gen %d) is %d bytes, want >= %d: %w", i, mk.Gen, len(mk.Key), MinKeyLen, ErrInvalid)
		}
		if seen[mk.Gen] {
			return nil, fmt.Errorf("new keyring: duplicate gen %d: %w", mk.Gen, ErrInvalid)
		}
		seen[mk.Gen] = true
		r := mk.Gen & 3
		if s := k.slots[r]; s == nil || s.gen < mk.Gen {
			k.slots[r] = &slot{gen: mk.Gen, key: append([]byte(nil), mk.Key...), retireAt: mk.RetireAt}
		}
	}
	if !seen[current] {
		return nil, fmt.Errorf("new keyring: current gen %d not among the keys: %w", current, ErrInvalid)
	}
	if s := k.slots[current&3]; s.gen != current {
		return nil, fmt.Errorf("new keyring: current gen %d is shadowed by newer gen %d of the same residue mod 4: %w", current, s.gen, ErrInvalid)
	}
	k.cache = newCodeCache(codeCacheSlots)
	return k, nil
}

// LatestGen returns the highest generation among keys that is not retired
// at now, for configurations that do not name the current generation.
// It reports false when every key is retired or keys is empty.
func LatestGen(keys []MasterKey, now time.Time) (uint8, bool) {
	var best uint8
	found := false
	for _, mk := range keys {
		if !mk.RetireAt.IsZero() && !now.Before(mk.RetireAt) {
			continue
		}
		if !found || mk.Gen > best {
			best, found = mk.Gen, true
		}
	}
	return best, found
}

// Current returns the generation that issues new codes.
func (k *Keyring) Current() uint8 { return k.current }
