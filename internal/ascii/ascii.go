// Package ascii holds the byte-level helpers of HTTP header syntax that
// several packages read by hand (ASCII case, optional whitespace), so that
// each exists once.
package ascii

// Lower returns the lower-case form of an ASCII letter and any other byte
// unchanged.
func Lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Upper returns the upper-case form of an ASCII letter and any other byte
// unchanged.
func Upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// IsAlnum reports whether c is an ASCII letter or digit.
func IsAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// IsHex reports whether c is a hexadecimal digit, of either case.
func IsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// TrimOWS trims optional whitespace (spaces and tabs, RFC 9110) at both
// ends. Unlike bytes.Trim it keeps an all-blank value non-nil, which is how
// header readers tell a present but empty value from an absent one.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// LowerString returns s with its ASCII letters lower-cased and every other
// byte unchanged: no Unicode case mapping (such as "K", the Kelvin sign,
// lower-casing to "k") applies. It returns s itself when s has no upper-case
// ASCII letter.
func LowerString(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = Lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

// UpperString returns s with its ASCII letters upper-cased and every other
// byte unchanged: no Unicode case mapping (such as "ſ" upper-casing to "S")
// applies. It returns s itself when s has no lower-case ASCII letter.
func UpperString(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = Upper(b[j])
			}
			return string(b)
		}
	}
	return s
}
