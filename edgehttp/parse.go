package edgehttp

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"

	"github.com/refrouter/refrouter/internal/ascii"
)

// Request is one request the fast path answers. Its byte slices point into
// the connection's read buffer and are valid only during the Serve call.
type Request struct {
	// Head is set for HEAD, clear for GET (the only two methods served here).
	Head bool
	// Path is the request target up to '?', starting with '/'.
	Path []byte
	// Query is the request target after '?' (nil when there is none).
	Query []byte
	// Host, UserAgent, XForwardedFor, Forwarded, AcceptLanguage and Cookie are
	// the values of those headers (nil when absent), with surrounding blanks
	// trimmed. Each appears at most once: a request repeating one of them goes
	// to the fallback server, which knows how to combine them.
	Host, UserAgent, XForwardedFor, Forwarded, AcceptLanguage, Cookie []byte
	// Close is set when the client asked to close the connection after this
	// request (Connection: close). The server closes it after the answer,
	// which should then carry "Connection: close" too (RFC 9112 §9.6), as
	// the fallback's answers do: Serve writes it.
	Close bool
	// Now is when the request was read: the server reads the wall clock
	// (to the microsecond, without a monotonic reading) once per batch of
	// requests read together.
	Now time.Time
	// Date is Now as an HTTP date (IMF-fixdate), for a Date header.
	Date []byte
	// Remote is the address of the connection's peer (invalid when the
	// connection is not TCP).
	Remote netip.AddrPort
}

// parseResult says what parseRequest made of the start of a buffer.
type parseResult int

const (
	// needMore: the buffer holds the beginning of a request that may still
	// turn out fast; read more.
	needMore parseResult = iota
	// fast: a whole request the fast path may answer; n bytes long.
	fast
	// fallback: anything else; the request (and the connection) go to the
	// fallback server, which answers it, errors included.
	fallback
)

// parseRequest parses the request at the start of b. It accepts a strict
// subset of HTTP/1.1 only: "GET" or "HEAD", an origin-form target of visible
// ASCII, exactly "HTTP/1.1", CRLF line ends, token header names, no obs-fold,
// a Host header of the plain forms validHost takes, no body (no
// Content-Length or Transfer-Encoding), no Upgrade or Expect, no Connection
// option other than keep-alive or close, and no repeated header among those
// Request carries. Everything outside it
// is the fallback server's to answer or reject, so this parser never has to
// produce an error response and cannot disagree with the fallback about
// where a request ends (it only ever claims requests without a body).
//
// match is asked whether the path is one the fast path serves; it is called
// before the headers are read, so a request for any other path goes to the
// fallback as soon as its request line is in.
func parseRequest(b []byte, r *Request, match func(path []byte) bool) (parseResult, int) {
	*r = Request{Remote: r.Remote}
	// Request line. One pass over the target checks it and finds '?', ' '
	// ends it, and what follows must be exactly "HTTP/1.1\r\n", so the line
	// holds no other CR.
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if len(b) > 0 && !couldStartFast(b) {
			return fallback, 0
		}
		return needMore, 0
	}
	line := b[:eol+1]
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		r.Head = true
		line = line[5:]
	default:
		return fallback, 0
	}
	sp, q := -1, -1
	for i, c := range line {
		if c == ' ' {
			sp = i
			break
		}
		if c < 0x21 || c > 0x7e || c == '#' {
			return fallback, 0
		}
		if c == '?' && q < 0 {
			q = i
		}
	}
	if sp <= 0 || line[0] != '/' || string(line[sp+1:]) != "HTTP/1.1\r\n" {
		return fallback, 0
	}
	r.Path = line[:sp]
	if q >= 0 {
		r.Path, r.Query = line[:q], line[q+1:sp]
	}
	if !match(r.Path) {
		return fallback, 0
	}

	// Header fields, each in one pass: the name up to ':' through the token
	// table, then the value eight bytes at a time up to its first control
	// character, which must be the CR of the line's CRLF (tabs excepted).
	off := eol + 1
	for {
		rest := b[off:]
		if len(rest) > 0 && rest[0] == '\r' {
			if len(rest) < 2 {
				return needMore, 0
			}
			if rest[1] != '\n' {
				return badLine(rest)
			}
			off += 2
			break // end of the header block
		}
		colon := 0
		for colon < len(rest) && tchar[rest[colon]] {
			colon++
		}
		if colon == len(rest) {
			return needMore, 0
		}
		if colon == 0 || rest[colon] != ':' {
			return badLine(rest) // includes obs-fold (a leading blank)
		}
		end := colon + 1 // rest[end] is the CR ending the value
		for {
			end += firstCtl(rest[end:])
			if end < len(rest) && rest[end] == '\t' {
				end++
				continue
			}
			break
		}
		switch {
		case end == len(rest):
			return needMore, 0
		case rest[end] != '\r':
			return badLine(rest) // another control character, or a bare LF
		case end+1 == len(rest):
			return needMore, 0
		case rest[end+1] != '\n':
			return badLine(rest) // a bare CR
		}
		name, value := rest[:colon], ascii.TrimOWS(rest[colon+1:end])
		off += end + 2
		if !r.setField(name, value) {
			return fallback, 0
		}
	}
	if len(r.Host) == 0 {
		return fallback, 0 // missing (setField rejects an empty one): the fallback answers 400
	}
	return fast, off
}

// setField takes the header field name: value (value trimmed) into r when it
// is one r carries, and reports false when the field sends the request to
// the fallback: body framing, Upgrade or Expect, a Connection value other than
// close or keep-alive, a Host other than validHost takes, or a repeat of a
// field r carries.
func (r *Request) setField(name, value []byte) bool {
	var dst *[]byte
	switch len(name) {
	case 4:
		if equalFold(name, "host") {
			if !validHost(value) {
				return false // the fallback answers 400 (RFC 9112 §3.2)
			}
			dst = &r.Host
		}
	case 6:
		if equalFold(name, "cookie") {
			dst = &r.Cookie
		} else if equalFold(name, "expect") {
			return false
		}
	case 7:
		if equalFold(name, "upgrade") {
			return false
		}
	case 9:
		if equalFold(name, "forwarded") {
			dst = &r.Forwarded
		}
	case 10:
		if equalFold(name, "user-agent") {
			dst = &r.UserAgent
		} else if equalFold(name, "connection") {
			// Other spellings and option lists are the fallback's, so
			// that both servers read them alike.
			switch string(value) {
			case "close":
				r.Close = true
			case "keep-alive", "Keep-Alive":
			default:
				return false
			}
		}
	case 14:
		if equalFold(name, "content-length") {
			return false
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			dst = &r.XForwardedFor
		} else if equalFold(name, "accept-language") {
			dst = &r.AcceptLanguage
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			return false
		}
	}
	if dst != nil {
		if *dst != nil {
			return false // repeated: the fallback combines or rejects
		}
		*dst = value // non-nil even when empty: a subslice of b
	}
	return true
}

// validHost reports whether h, a Host header value, is one the fast path
// takes: a host of letters, digits, '-', '.' and '_' (names and IPv4
// addresses), or an IPv6 address in brackets (hexadecimal groups, no
// embedded IPv4 address or zone), either optionally followed by ':' and a
// port of digits. That is a strict subset of what RFC 3986 and fasthttp
// accept (no percent-encoding, sub-delims, user information or empty port):
// anything else, invalid hosts included, is the fallback's to answer (with
// 400 when invalid).
func validHost(h []byte) bool {
	i := 0
	if len(h) > 0 && h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 0 || !ipv6Literal(h[1:end]) {
			return false
		}
		i = end + 1
	} else {
		for i < len(h) && hostChar[h[i]] {
			i++
		}
		if i == 0 {
			return false
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' || i+1 == len(h) {
		return false
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ipv6Literal reports whether a is an IPv6 address of hexadecimal groups of
// one to four digits separated by ':': eight of them, or at most seven with
// one "::" standing for the rest.
func ipv6Literal(a []byte) bool {
	groups, double, i := 0, false, 0
	if len(a) >= 2 && a[0] == ':' && a[1] == ':' {
		double, i = true, 2
	}
	for i < len(a) {
		n := 0
		for i < len(a) && n <= 4 && ascii.IsHex(a[i]) {
			i++
			n++
		}
		if n == 0 || n > 4 {
			return false
		}
		groups++
		if i == len(a) {
			break
		}
		if a[i] != ':' {
			return false
		}
		i++
		switch {
		case i == len(a):
			return false // a single ':' at the end
		case a[i] == ':':
			if double {
				return false
			}
			double = true
			i++
		}
	}
	if double {
		return groups <= 7
	}
	return groups == 8
}

// hostChar marks the characters validHost takes in a host name.
var hostChar = alnumAnd("-._")

// alnumAnd returns the table of ASCII letters, digits and the bytes of extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := range t {
		t[c] = ascii.IsAlnum(byte(c))
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// badLine is the verdict on a header line found malformed before its end:
// the fallback's once the line's LF is in, so that a request is never handed
// over in the middle of a line; until then, read more.
func badLine(rest []byte) (parseResult, int) {
	if bytes.IndexByte(rest, '\n') < 0 {
		return needMore, 0
	}
	return fallback, 0
}

// firstCtl returns the index of the first byte of b below 0x20 or equal to
// 0x7f (a control character), len(b) when there is none. It tests eight
// bytes at a time: in the masks below a byte's top bit is set when the byte
// matches, and may also be set in a byte after a match (a borrow), never
// before one, so the lowest set bit marks the first match.
func firstCtl(b []byte) int {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		y := x ^ (ones * 0x7f) // bytes equal to 0x7f become zero
		if m := ((x-ones*0x20)&^x | (y-ones)&^y) & tops; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == 0x7f {
			return i
		}
	}
	return i
}

// couldStartFast reports whether an incomplete request line may still become
// a fast request (a prefix of "GET /" or "HEAD /" at least).
func couldStartFast(b []byte) bool {
	for _, m := range [...]string{"GET /", "HEAD /"} {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// tchar marks the characters of an RFC 9110 token.
var tchar = alnumAnd("!#$%&'*+-.^_`|~")

// equalFold compares b with the lower-case ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if ascii.Lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}
