package links

import "math/bits"

// CodeLen is the length in bytes of every share code.
const CodeLen = 16

const (
	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

	tagBits = 42
	tagMask = 1<<tagBits - 1

	// hiBits is the number of value bits held in value.hi (95 - 64).
	hiBits = 31
)

// value is a 95-bit code value: hi holds bits 64..94, lo bits 0..63.
type value struct{ hi, lo uint64 }

// makeValue joins the 53 non-tag bits and the 42-bit tag.
func makeValue(n53, tag uint64) value {
	return value{hi: n53 >> (64 - tagBits), lo: n53<<tagBits | tag&tagMask}
}

// n53 returns the 53 non-tag bits of v.
func (v value) n53() uint64 { return v.hi<<(64-tagBits) | v.lo>>tagBits }

// tag returns the 42-bit tag of v.
func (v value) tag() uint64 { return v.lo & tagMask }

// digit returns the base62 value of c.
func digit(c byte) (uint64, bool) {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0'), true
	case 'A' <= c && c <= 'Z':
		return uint64(c-'A') + 10, true
	case 'a' <= c && c <= 'z':
		return uint64(c-'a') + 36, true
	}
	return 0, false
}

// pow62x8 is 62^8, the value of 8 base62 digits; 62^8 > 2^47 and
// 2^95 / 62^8 < 62^8, so a code splits into two 8-digit halves.
const pow62x8 = 62 * 62 * 62 * 62 * 62 * 62 * 62 * 62

// parseHalf decodes 8 base62 digits.
func parseHalf(s []byte) (uint64, bool) {
	var x uint64
	for _, c := range s[:8] {
		d, ok := digit(c)
		if !ok {
			return 0, false
		}
		x = x*62 + d
	}
	return x, true
}

// parseValue decodes a 16-character base62 code. It reports false for a
// wrong length, a character outside the alphabet, or a value >= 2^95.
func parseValue(s []byte) (value, bool) {
	if len(s) != CodeLen {
		return value{}, false
	}
	a, ok1 := parseHalf(s[:8])
	b, ok2 := parseHalf(s[8:])
	if !ok1 || !ok2 {
		return value{}, false
	}
	hi, lo := bits.Mul64(a, pow62x8)
	var carry uint64
	lo, carry = bits.Add64(lo, b, 0)
	hi += carry
	if hi>>hiBits != 0 {
		return value{}, false
	}
	return value{hi: hi, lo: lo}, true
}

// appendValue appends the 16-character base62 form of v to dst.
func appendValue(dst []byte, v value) []byte {
	var buf [CodeLen]byte
	// v.hi < 2^31 < 62^8, so one 128/64 division splits v into halves.
	a, b := bits.Div64(v.hi, v.lo, pow62x8)
	for i := CodeLen - 1; i >= 8; i-- {
		buf[i] = alphabet[b%62]
		b /= 62
	}
	for i := 7; i >= 0; i-- {
		buf[i] = alphabet[a%62]
		a /= 62
	}
	return append(dst, buf[:]...)
}

// IsCodeShaped reports whether s has the shape of a share code: CodeLen
// characters of the base62 alphabet. It says nothing about the tag; routers
// use it to tell a code path from other paths without allocating.
func IsCodeShaped[T ~string | ~[]byte](s T) bool {
	if len(s) != CodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if _, ok := digit(s[i]); !ok {
			return false
		}
	}
	return true
}
