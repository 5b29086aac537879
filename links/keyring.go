package links

import (
	"crypto/aes"
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
	// IssueFrom is when this generation may start issuing codes (the zero
	// time: at once). It verifies from the start, so a key added with
	// IssueFrom after a rolling restart ends is known to every node before
	// any node issues with it.
	IssueFrom time.Time
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
	return s.store(campaign, newCampaignKey(s.key, campaign))
}

// keyFor returns the derived key of campaign for verification and whether
// it is fresh (derived now, not cached); the caller caches a fresh key with
// store only after a tag made with it checks out.
func (s *slot) keyFor(campaign uint16) (ck *campaignKey, fresh bool) {
	if ck := s.cached(campaign); ck != nil {
		return ck, false
	}
	return newCampaignKey(s.key, campaign), true
}

// Labels of the keys derived from a master key, one per use (domain
// separation: a key serves one purpose only).
const (
	// labelCampaign derives the campaign key: the HMAC-SHA256 key of code
	// tags and of version 1 click tokens.
	labelCampaign = "refrouter/v1/campaign/"
	// labelClickV2 derives the AES-128-CMAC key of version 2 click tokens.
	labelClickV2 = "refrouter/v2/click/campaign/"
)

// deriveKey returns HMAC-SHA256(master, label+decimal(campaign)).
func deriveKey(master []byte, label string, campaign uint16) [sha256.Size]byte {
	m := hmac.New(sha256.New, master)
	m.Write(strconv.AppendUint([]byte(label), uint64(campaign), 10))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// campaignKey holds the keys derived from one generation's master key for
// one campaign: a pool of HMAC states keyed by the campaign key, so that
// tagging reuses hash state instead of allocating, and the version 2 click
// token key, derived on first use (a keyring that neither emits nor sees v2
// tokens never derives it, and verifying a code costs one derivation, as
// before v2). It is safe for concurrent use.
type campaignKey struct {
	pool     sync.Pool // of *macState
	master   []byte    // the slot's master key (shared, never modified)
	campaign uint16
	click    atomic.Pointer[cmacKey] // v2 click token key; nil until first use
}

// newCampaignKey derives the campaign key of campaign from master.
func newCampaignKey(master []byte, campaign uint16) *campaignKey {
	key := deriveKey(master, labelCampaign, campaign)
	ck := &campaignKey{master: master, campaign: campaign}
	ck.pool.New = func() any { return &macState{h: hmac.New(sha256.New, key[:])} }
	return ck
}

// clickKey returns the AES-128-CMAC key of version 2 click tokens: the first
// 16 bytes of HMAC-SHA256(master, labelClickV2+decimal(campaign)). It is
// derived on first use; racing first uses derive the same key and all but
// one are dropped. Once derived it costs an atomic load.
func (ck *campaignKey) clickKey() *cmacKey {
	if c := ck.click.Load(); c != nil {
		return c
	}
	k := deriveKey(ck.master, labelClickV2, ck.campaign)
	c, err := newCMACKey(k[:16])
	if err != nil {
		panic(err) // unreachable: a 16-byte key is a valid AES-128 key
	}
	if ck.click.CompareAndSwap(nil, c) {
		return c
	}
	return ck.click.Load()
}

func (ck *campaignKey) get() *macState   { return ck.pool.Get().(*macState) }
func (ck *campaignKey) put(st *macState) { ck.pool.Put(st) }

// macState is one HMAC instance with scratch buffers that live on the heap
// with it, so passing them through the hash.Hash or cipher.Block interface
// does not allocate. A macState is used by one goroutine at a time (between
// get and put).
type macState struct {
	h    hash.Hash
	msg  [8]byte
	sum  [sha256.Size]byte
	buf  [maxRawClick]byte
	cmac [aes.BlockSize]byte // CMAC state and result (cmacKey.sum)
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
	current      uint8
	clickVersion uint8 // the version of the click tokens it signs
	slots        [4]*slot
	b64          *base64.Encoding // strict raw URL encoding
	cache        *codeCache       // verified codes; nil disables the cache
}

// Option configures a Keyring at NewKeyring.
type Option func(*keyringOptions)

type keyringOptions struct {
	clickVersion uint8
}

// WithClickTokenVersion makes the keyring sign click tokens of version v,
// ClickTokenV1 or ClickTokenV2 (the default); NewKeyring rejects any other.
// Verification accepts both versions whatever v is. Emit ClickTokenV1 only
// while some node of the cluster runs a build that verifies nothing newer
// (a rolling upgrade): a node must not sign tokens its peers cannot verify.
func WithClickTokenVersion(v uint8) Option {
	return func(o *keyringOptions) { o.clickVersion = v }
}

// NewKeyring validates keys and options and returns a keyring that issues
// with generation current. Keys must be at least MinKeyLen bytes with unique
// generations, and current must be present and be the newest generation of
// its residue mod 4 (otherwise its codes could not verify). Older keys of the
// same residue as a newer one are kept out: codes carry only gen mod 4.
// Without options it signs click tokens of version ClickTokenV2.
func NewKeyring(keys []MasterKey, current uint8, opts ...Option) (*Keyring, error) {
	o := keyringOptions{clickVersion: ClickTokenV2}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clickVersion != ClickTokenV1 && o.clickVersion != ClickTokenV2 {
		return nil, fmt.Errorf("new keyring: click token version %d not supported (want %d or %d): %w", o.clickVersion, ClickTokenV1, ClickTokenV2, ErrInvalid)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("new keyring: no master keys: %w", ErrInvalid)
	}
	k := &Keyring{current: current, clickVersion: o.clickVersion, b64: base64.RawURLEncoding.Strict()}
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
// at now and may issue at now (IssueFrom), for configurations that do not
// name the current generation. It reports false when no key qualifies.
func LatestGen(keys []MasterKey, now time.Time) (uint8, bool) {
	var best uint8
	found := false
	for _, mk := range keys {
		if !mk.RetireAt.IsZero() && !now.Before(mk.RetireAt) {
			continue
		}
		if now.Before(mk.IssueFrom) {
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

// ClickTokenVersion returns the version of the click tokens the keyring
// signs (ClickTokenV1 or ClickTokenV2).
func (k *Keyring) ClickTokenVersion() uint8 { return k.clickVersion }
