package links

import (
	"crypto/subtle"
	"fmt"
	"time"
)

// MaxVariant is the largest variant a code can carry.
const MaxVariant = 7

// Code is the content of a share code.
type Code struct {
	// Campaign is the campaign number assigned by the ledger.
	Campaign uint16
	// Inviter is the inviter number assigned by the ledger.
	Inviter uint32
	// Variant is the A/B variant, 0 to MaxVariant.
	Variant uint8
	// Gen is the key generation. Keyring.Verify sets the full generation of
	// the key that verified the code; Peek can only know Gen mod 4.
	// Keyring.AppendCode ignores it and issues with the current generation.
	Gen uint8
}

// n53 returns the 53 non-tag bits of c (generation taken mod 4).
func (c Code) n53() uint64 {
	return uint64(c.Gen&3)<<51 | uint64(c.Variant&7)<<48 | uint64(c.Campaign)<<32 | uint64(c.Inviter)
}

// codeFromN53 splits the 53 non-tag bits; Gen is set to gen mod 4.
func codeFromN53(n uint64) Code {
	return Code{
		Gen:      uint8(n >> 51 & 3),
		Variant:  uint8(n >> 48 & 7),
		Campaign: uint16(n >> 32),
		Inviter:  uint32(n),
	}
}

// AppendCode appends the 16-character share code of c, issued with the
// keyring's current generation, to dst and returns the extended slice.
// c.Gen is ignored. It does not allocate when dst has 16 bytes of spare
// capacity (after the campaign key's first use). It fails with ErrInvalid
// when c.Variant > MaxVariant.
func (k *Keyring) AppendCode(dst []byte, c Code) ([]byte, error) {
	if c.Variant > MaxVariant {
		return dst, fmt.Errorf("append code: variant %d > %d: %w", c.Variant, MaxVariant, ErrInvalid)
	}
	c.Gen = k.current
	s := k.slots[c.Gen&3]
	n := c.n53()
	ck := s.campaignKey(c.Campaign)
	st := ck.get()
	tag := st.codeTag(n)
	ck.put(st)
	return appendValue(dst, makeValue(n, tag)), nil
}

// Verify parses and authenticates a share code at time now. It returns
// ErrMalformed for anything that is not a 16-character base62 value below
// 2^95, ErrForged when the tag does not match (or no key of the code's
// generation is in the keyring), and ErrRetired when the code is genuine but
// its generation is retired at now; with ErrRetired the decoded Code is
// returned too, for diagnostics. Errors are unwrapped sentinels.
//
// Verify is VerifyCode without the proof of verification; see VerifyCode for
// the cache of verified codes. It does not allocate once the campaign's key
// is cached, is safe for concurrent use, and does not retain code. A campaign
// key or a code is cached only after a genuine code or token of it was seen
// (or one was issued here), so forged codes naming arbitrary campaigns cost a
// key derivation each but never grow memory or evict cached codes.
func (k *Keyring) Verify(code []byte, now time.Time) (Code, error) {
	v, err := k.VerifyCode(code, now)
	return v.code, err
}

// VerifiedCode is a share code that Keyring.VerifyCode authenticated, with
// the tag it verified, so that Keyring.AppendClickTokenFor can sign a click
// token for it without recomputing that tag. Only VerifyCode makes one; the
// zero value stands for no verification (AppendClickTokenFor then computes
// the tag itself). A VerifiedCode is a small value, cheap to copy.
type VerifiedCode struct {
	code Code         // Gen is the full generation
	tag  uint64       // the code's 42-bit tag, checked against ck
	s    *slot        // the keyring slot that verified it; nil in the zero value
	ck   *campaignKey // s's key of code.Campaign
}

// Code returns the verified code's content, as Keyring.Verify returns it
// (Gen is the full generation of the verifying key). It is the zero Code for
// the zero VerifiedCode.
func (v VerifiedCode) Code() Code { return v.code }

// VerifyCode is Verify returning a VerifiedCode: it parses and authenticates a
// share code at time now, with exactly Verify's results and errors
// (v.Code() is what Verify returns), and v proves the verification to
// AppendClickTokenFor. With ErrRetired, v is returned too (the code is
// genuine); with any other error v is the zero VerifiedCode.
//
// The keyring caches recently verified genuine codes in a fixed-size table,
// so a repeated code is verified without an HMAC: the cached entry is found
// by a seeded hash of code and compared in full in constant time, and the key
// generation's retirement is still checked against now on every call. Forged
// and malformed codes are never cached. VerifyCode is safe for concurrent
// use, does not retain code, and does not allocate once the campaign's key is
// cached.
func (k *Keyring) VerifyCode(code []byte, now time.Time) (VerifiedCode, error) {
	var sl *codeSlot
	if k.cache != nil && len(code) == CodeLen {
		var v value
		var hit bool
		if sl, v, hit = k.cache.lookup(code); hit {
			// The cache holds only values whose tag checked out here, and
			// their campaign keys were cached first; the nil checks cannot
			// fail, but if they did the code would be verified afresh.
			n := v.n53()
			if s := k.slots[n>>51]; s != nil {
				if ck := s.cached(uint16(n >> 32)); ck != nil {
					vc := VerifiedCode{code: codeFromN53(n), tag: v.tag(), s: s, ck: ck}
					vc.code.Gen = s.gen
					if s.retired(now) {
						return vc, ErrRetired
					}
					return vc, nil
				}
			}
		}
	}
	vc, err := k.verifyUncached(code)
	if err != nil {
		return VerifiedCode{}, err
	}
	if sl != nil {
		k.cache.insert(sl, code, makeValue(vc.code.n53(), vc.tag))
	}
	if vc.s.retired(now) {
		return vc, ErrRetired
	}
	return vc, nil
}

// verifyUncached parses and authenticates code with one HMAC, ignoring the
// code cache and retirement. It returns ErrMalformed or ErrForged, or the
// genuine code. It caches the campaign key once the tag checks out.
func (k *Keyring) verifyUncached(code []byte) (VerifiedCode, error) {
	v, ok := parseValue(code)
	if !ok {
		return VerifiedCode{}, ErrMalformed
	}
	n := v.n53()
	s := k.slots[n>>51]
	if s == nil {
		return VerifiedCode{}, ErrForged
	}
	c := codeFromN53(n)
	c.Gen = s.gen
	ck, fresh := s.keyFor(c.Campaign)
	st := ck.get()
	want := st.codeTag(n)
	ck.put(st)
	if !tagEqual(want, v.tag()) {
		return VerifiedCode{}, ErrForged
	}
	if fresh {
		ck = s.store(c.Campaign, ck)
	}
	return VerifiedCode{code: c, tag: v.tag(), s: s, ck: ck}, nil
}

// tagEqual compares two 42-bit tags in constant time.
func tagEqual(a, b uint64) bool {
	x := a ^ b
	return subtle.ConstantTimeEq(int32(uint32(x)|uint32(x>>32)), 0) == 1
}

// Peek parses a share code without authenticating it, for routing and
// diagnostics; never trust its result. Gen is the generation mod 4. It
// returns ErrMalformed (unwrapped) when code does not parse.
func Peek(code []byte) (Code, error) {
	v, ok := parseValue(code)
	if !ok {
		return Code{}, ErrMalformed
	}
	return codeFromN53(v.n53()), nil
}
