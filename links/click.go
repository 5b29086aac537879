package links

import (
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"time"
)

// Click token layout (see the package doc).
const (
	clickVersion = 1

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
// the extended slice. The token is signed with the campaign key of
// generation c.Code.Gen, which must be in the keyring (normally c.Code comes
// from Verify). It does not allocate when dst has enough spare capacity
// (MaxClickTokenLen always suffices) once the campaign key is cached. It
// fails with ErrInvalid for a node name over MaxNodeLen bytes, a variant
// over MaxVariant, or a generation not in the keyring.
//
// AppendClickToken recomputes the code's tag (an HMAC) before signing the
// token (another); right after VerifyCode, AppendClickTokenFor saves the
// first.
func (k *Keyring) AppendClickToken(dst []byte, c Click) ([]byte, error) {
	return k.AppendClickTokenFor(dst, VerifiedCode{}, c)
}

// AppendClickTokenFor is AppendClickToken for a code the caller has just
// verified: v is what this keyring's VerifyCode returned for c.Code. It
// returns exactly what AppendClickToken(dst, c) returns, byte for byte and
// error for error, but when v comes from this keyring and v.Code() == c.Code
// it takes the code's tag from v instead of recomputing it, so the token
// costs one HMAC instead of two. For any other v (the zero VerifiedCode,
// another code's, another keyring's) it recomputes the tag. It does not
// allocate when dst has enough spare capacity (MaxClickTokenLen always
// suffices).
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
	st := ck.get()
	tag := v.tag
	if !known {
		tag = st.codeTag(n)
	}
	cv := makeValue(n, tag)

	b := st.buf[:]
	b[offVersion] = clickVersion
	binary.BigEndian.PutUint32(b[offCode:], uint32(cv.hi))
	binary.BigEndian.PutUint64(b[offCode+4:], cv.lo)
	binary.BigEndian.PutUint64(b[offClickID:], c.ClickID)
	var ns int64
	if !c.At.IsZero() {
		ns = c.At.UnixNano()
	}
	binary.BigEndian.PutUint64(b[offTime:], uint64(ns))
	b[offNodeLen] = byte(len(c.Node))
	m := offNode + copy(b[offNode:], c.Node)
	sum := st.mac(b[:m])
	copy(b[m:], sum[:clickTagLen])
	dst = k.b64.AppendEncode(dst, b[:m+clickTagLen])
	ck.put(st)
	return dst, nil
}

// VerifyClick decodes and authenticates a click token at time now. It
// returns ErrMalformed for a token that does not decode (bad base64, wrong
// length, unknown version, bad layout), ErrForged when the tag does not
// match or the key generation is not in the keyring, and ErrRetired when the
// token is genuine but its generation is retired at now (the Click is
// returned too). Errors are unwrapped sentinels. Tags are compared in
// constant time. It allocates only the Node string, is safe for concurrent
// use, and does not retain tok.
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
	nl := int(raw[offNodeLen])
	if raw[offVersion] != clickVersion || nl > MaxNodeLen || m != offNode+nl+clickTagLen {
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
	copy(st.buf[:], raw[:body])
	sum := st.mac(st.buf[:body])
	ok := hmac.Equal(sum[:clickTagLen], raw[body:m])
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
