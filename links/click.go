package links

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Click token versions (see the package doc). A Keyring verifies both and
// signs one, chosen with WithClickTokenVersion.
const (
	// ClickTokenV1 tokens are tagged with HMAC-SHA256 under the campaign key
	// (the key of code tags), truncated to 128 bits.
	ClickTokenV1 = 1
	// ClickTokenV2 tokens are tagged with AES-128-CMAC under a key derived
	// for click tokens alone. It is the default: about a third of v1's cost.
	ClickTokenV2 = 2
)

// Click token layout (see the package doc); both versions share it.
const (
	offVersion  = 0
	offCode     = 1
	offClickID  = 13
	offTime     = 21
	offNodeLen  = 29
	offNode     = 30
	clickTagLen = 16

	minRawClick = offNode + clickTagLen
	maxRawClick = offNode + MaxNodeLen + clickTagLen

	// MaxNodeLen is the longest node name a click token can carry.
	MaxNodeLen = 64
	// MaxClickTokenLen is the length of the longest click token (a 64-byte
	// node name); a buffer of this capacity never grows in AppendClickToken.
	MaxClickTokenLen = (maxRawClick*8 + 5) / 6
	// minClickTokenLen is the length of a token with an empty node name.
	minClickTokenLen = (minRawClick*8 + 5) / 6
)

// Click is the content of a click token: which code was clicked, a click id
// unique to the issuing node, when and on which node.
type Click struct {
	// Code is the clicked code; Code.Gen is the full generation whose
	// campaign key signs the token.
	Code Code
	// ClickID identifies the click.
	ClickID uint64
	// At is carried as Unix nanoseconds, so it must lie in years 1678-2262;
	// the zero time is carried as 0 and decodes as the zero time (as does the
	// Unix epoch itself). VerifyClick returns it in UTC.
	At time.Time
	// Node is the issuing node's name, at most MaxNodeLen bytes.
	Node string
}

// AppendClickToken appends the signed click token of c to dst and returns
// the extended slice. The token is of the keyring's click token version
// (WithClickTokenVersion) and signed with a key of generation c.Code.Gen,
// which must be in the keyring (normally c.Code comes from Verify). It does
// not allocate when dst has enough spare capacity (MaxClickTokenLen always
// suffices) once the campaign key is cached. It fails with ErrInvalid for a
// node name over MaxNodeLen bytes, a variant over MaxVariant, or a
// generation not in the keyring.
//
// AppendClickToken recomputes the code's tag (an HMAC) before signing the
// token; right after VerifyCode, AppendClickTokenFor saves it.
func (k *Keyring) AppendClickToken(dst []byte, c Click) ([]byte, error) {
	return k.AppendClickTokenFor(dst, VerifiedCode{}, c)
}

// AppendClickTokenFor is AppendClickToken for a code the caller has just
// verified: v is what this keyring's VerifyCode returned for c.Code. It
// returns exactly what AppendClickToken(dst, c) returns, byte for byte and
// error for error, but when v comes from this keyring and v.Code() == c.Code
// it takes the code's tag from v instead of recomputing it, so the token
// costs its own MAC alone (a CMAC for v2, an HMAC for v1). For any other v
// (the zero VerifiedCode, another code's, another keyring's) it recomputes
// the tag. It does not allocate when dst has enough spare capacity
// (MaxClickTokenLen always suffices); it may use that spare capacity as
// scratch before appending the token.
func (k *Keyring) AppendClickTokenFor(dst []byte, v VerifiedCode, c Click) ([]byte, error) {
	if len(c.Node) > MaxNodeLen {
		return dst, fmt.Errorf("append click token: node name of %d bytes > %d: %w", len(c.Node), MaxNodeLen, ErrInvalid)
	}
	if c.Code.Variant > MaxVariant {
		return dst, fmt.Errorf("append click token: variant %d > %d: %w", c.Code.Variant, MaxVariant, ErrInvalid)
	}
	s := k.slots[c.Code.Gen&3]
	if s == nil || s.gen != c.Code.Gen {
		return dst, fmt.Errorf("append click token: key gen %d not in keyring: %w", c.Code.Gen, ErrInvalid)
	}
	n := c.Code.n53()
	// v proves c.Code's tag only if this keyring's slot verified this very
	// code: slots are per keyring, and v's fields are immutable outside the
	// package.
	known := v.s == s && v.code == c.Code
	ck := v.ck
	if !known {
		ck = s.campaignKey(c.Code.Campaign)
	}
	if k.clickVersion == ClickTokenV1 {
		return k.appendClickV1(dst, ck, known, v.tag, n, c), nil
	}
	tag := v.tag
	if !known {
		st := ck.get()
		tag = st.codeTag(n)
		ck.put(st)
	}
	var raw [maxRawClick]byte
	m := putClickBody(raw[:], ClickTokenV2, makeValue(n, tag), c)
	// The CMAC's working block goes through the cipher.Block interface, so
	// it must not be on the stack (it would escape, an allocation per call):
	// borrow the start of dst's spare capacity, which the token, longer than
	// a block, overwrites right after.
	dst = slices.Grow(dst, k.b64.EncodedLen(m+clickTagLen))
	x := (*[aes.BlockSize]byte)(dst[len(dst) : len(dst)+aes.BlockSize])
	ck.clickKey().sum(x, raw[:m])
	copy(raw[m:], x[:])
	return k.b64.AppendEncode(dst, raw[:m+clickTagLen]), nil
}

// appendClickV1 appends the version 1 token of c, whose code's 53 non-tag
// bits are n, signed with ck's HMAC; tag is the code's tag when known.
func (k *Keyring) appendClickV1(dst []byte, ck *campaignKey, known bool, tag, n uint64, c Click) []byte {
	st := ck.get()
	if !known {
		tag = st.codeTag(n)
	}
	// The body is built in the pooled state, on the heap: hash.Hash.Write
	// makes its argument escape.
	m := putClickBody(st.buf[:], ClickTokenV1, makeValue(n, tag), c)
	sum := st.mac(st.buf[:m])
	copy(st.buf[m:], sum[:clickTagLen])
	dst = k.b64.AppendEncode(dst, st.buf[:m+clickTagLen])
	ck.put(st)
	return dst
}

// putClickBody writes the body of c's token (all but the tag) of the given
// version, carrying the code value cv, to b, which has room for
// maxRawClick bytes, and returns the body's length. c.Node is at most
// MaxNodeLen bytes.
func putClickBody(b []byte, version uint8, cv value, c Click) int {
	b[offVersion] = version
	binary.BigEndian.PutUint32(b[offCode:], uint32(cv.hi))
	binary.BigEndian.PutUint64(b[offCode+4:], cv.lo)
	binary.BigEndian.PutUint64(b[offClickID:], c.ClickID)
	var ns int64
	if !c.At.IsZero() {
		ns = c.At.UnixNano()
	}
	binary.BigEndian.PutUint64(b[offTime:], uint64(ns))
	b[offNodeLen] = byte(len(c.Node))
	return offNode + copy(b[offNode:offNode+MaxNodeLen], c.Node)
}

// VerifyClick decodes and authenticates a click token of either version at
// time now. It returns ErrMalformed for a token that does not decode (bad
// base64, wrong length, unknown version, bad layout), ErrForged when the tag
// (or the embedded code's own tag) does not match or the key generation is
// not in the keyring, and ErrRetired when the token is genuine but its
// generation is retired at now (the Click is returned too). Errors are
// unwrapped sentinels. Tags are compared in constant time. It allocates only
// the Node string once the campaign's keys are cached, is safe for
// concurrent use, and does not retain tok.
func (k *Keyring) VerifyClick(tok []byte, now time.Time) (Click, error) {
	if len(tok) < minClickTokenLen || len(tok) > MaxClickTokenLen {
		return Click{}, ErrMalformed
	}
	var raw [maxRawClick]byte
	m, err := k.b64.Decode(raw[:], tok)
	// The decoder skips '\r' and '\n'; insist on the canonical length.
	if err != nil || k.b64.EncodedLen(m) != len(tok) || m < minRawClick {
		return Click{}, ErrMalformed
	}
	ver := raw[offVersion]
	nl := int(raw[offNodeLen])
	if (ver != ClickTokenV1 && ver != ClickTokenV2) || nl > MaxNodeLen || m != offNode+nl+clickTagLen {
		return Click{}, ErrMalformed
	}
	hi := uint64(binary.BigEndian.Uint32(raw[offCode:]))
	if hi>>hiBits != 0 {
		return Click{}, ErrMalformed
	}
	v := value{hi: hi, lo: binary.BigEndian.Uint64(raw[offCode+4:])}
	n := v.n53()
	s := k.slots[n>>51]
	if s == nil {
		return Click{}, ErrForged
	}
	code := codeFromN53(n)
	code.Gen = s.gen
	body := offNode + nl

	ck, fresh := s.keyFor(code.Campaign)
	st := ck.get()
	var want []byte
	if ver == ClickTokenV1 {
		copy(st.buf[:], raw[:body])
		want = st.mac(st.buf[:body])[:clickTagLen]
	} else {
		ck.clickKey().sum(&st.cmac, raw[:body])
		want = st.cmac[:]
	}
	ok := subtle.ConstantTimeCompare(want, raw[body:m]) == 1
	// The embedded code must itself be genuine (defence in depth, and it
	// keeps tokens canonical).
	ok = tagEqual(st.codeTag(n), v.tag()) && ok
	ck.put(st)
	if !ok {
		return Click{}, ErrForged
	}
	if fresh {
		s.store(code.Campaign, ck)
	}
	c := Click{
		Code:    code,
		ClickID: binary.BigEndian.Uint64(raw[offClickID:]),
		Node:    string(raw[offNode:body]),
	}
	if ns := int64(binary.BigEndian.Uint64(raw[offTime:])); ns != 0 {
		c.At = time.Unix(0, ns).UTC()
	}
	if s.retired(now) {
		return c, ErrRetired
	}
	return c, nil
}
