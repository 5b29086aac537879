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
// Verify does not allocate once the campaign's key is cached, is safe for
// concurrent use, and does not retain code. A campaign key is cached only
// after a genuine code or token of it was seen (or one was issued here), so
// forged codes naming arbitrary campaigns cost a key derivation each but
// never grow memory.
func (k *Keyring) Verify(code []byte, now time.Time) (Code, error) {
	v, ok := parseValue(code)
	if !ok {
		return Code{}, ErrMalformed
	}
	n := v.n53()
	s := k.slots[n>>51]
	if s == nil {
		return Code{}, ErrForged
	}
	c := codeFromN53(n)
	c.Gen = s.gen
	ck, fresh := s.keyFor(c.Campaign)
	st := ck.get()
	want := st.codeTag(n)
	ck.put(st)
	if !tagEqual(want, v.tag()) {
		return Code{}, ErrForged
	}
	if fresh {
		s.store(c.Campaign, ck)
	}
	if s.retired(now) {
		return c, ErrRetired
	}
	return c, nil
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
