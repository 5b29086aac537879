// Package clientip finds the client's IP address of an HTTP request that may
// have passed through trusted reverse proxies.
//
// The connection's remote address is the client unless it lies in a trusted
// CIDR. Only then are the X-Forwarded-For or RFC 7239 Forwarded headers read,
// from the right (the end appended by the proxy nearest to us) towards the
// left, and the first hop that is not itself trusted is the client. Everything
// to the left of that hop was written by the client and is never believed.
//
// The common path (one or two plain hops) does not allocate. A Resolver is
// immutable after construction and safe for concurrent use.
package clientip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/refrouter/refrouter/internal/ascii"
)

// ErrInvalidPrefix is wrapped by ParsePrefixes when a value is neither a CIDR
// nor a bare IP address.
var ErrInvalidPrefix = errors.New("clientip: invalid prefix")

// Header selects which forwarding header a Resolver believes.
type Header uint8

const (
	// HeaderAuto reads X-Forwarded-For when it is non-empty, else Forwarded.
	// Prefer naming the one header your proxies actually append: a header the
	// proxies do not touch is entirely client-controlled, and under HeaderAuto a
	// client can always add the one the proxy leaves alone (the walk still
	// stops at the first untrusted hop, so the damage is a wrong client IP,
	// never a trusted one).
	HeaderAuto Header = iota
	// HeaderXFF reads only X-Forwarded-For.
	HeaderXFF
	// HeaderForwarded reads only the RFC 7239 Forwarded header.
	HeaderForwarded
)

// Resolver finds client addresses behind a fixed set of trusted proxies.
// It is immutable and safe for concurrent use; the zero value trusts nothing
// and so always returns the remote address.
type Resolver struct {
	trusted []netip.Prefix
	header  Header
}

// NewResolver returns a Resolver trusting the given prefixes (copied; IPv4-mapped
// IPv6 prefixes are unmapped) and reading the given header.
func NewResolver(trusted []netip.Prefix, header Header) *Resolver {
	ps := make([]netip.Prefix, 0, len(trusted))
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		ps = append(ps, normPrefix(p))
	}
	return &Resolver{trusted: ps, header: header}
}

// From is a convenience for NewResolver(trusted, HeaderAuto).From(...). It
// normalises nothing in trusted and allocates nothing; callers on a hot path
// should still build a Resolver once.
func From(remote netip.Addr, xff, forwarded []byte, trusted []netip.Prefix) netip.Addr {
	r := Resolver{trusted: trusted, header: HeaderAuto}
	return r.From(remote, xff, forwarded)
}

// Trusted reports whether a is inside one of the trusted prefixes.
func (r *Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// From returns the client's address. xff and forwarded are the raw values of
// the X-Forwarded-For and Forwarded headers (several header lines must be
// joined with ", " in order); either may be nil. The result is unmapped
// (::ffff:a.b.c.d becomes a.b.c.d) and is always either remote or an address
// that appears in the header that was read.
//
// If remote is not trusted it is returned. Otherwise the header is walked from
// the right: trusted hops are skipped, the first untrusted hop is returned, and
// if every hop is trusted the leftmost one is returned. A malformed hop, an
// obfuscated or "unknown" Forwarded node, or a Forwarded element without for=
// stops the walk and the last good hop (or remote) is returned: nothing to the
// left of a hop we cannot identify can be trusted. From does not retain xff or
// forwarded.
func (r *Resolver) From(remote netip.Addr, xff, forwarded []byte) netip.Addr {
	remote = remote.Unmap()
	if !r.Trusted(remote) {
		return remote
	}
	switch r.header {
	case HeaderXFF:
		return r.walkXFF(remote, xff)
	case HeaderForwarded:
		return r.walkForwarded(remote, forwarded)
	default:
		if len(ascii.TrimOWS(xff)) > 0 {
			return r.walkXFF(remote, xff)
		}
		return r.walkForwarded(remote, forwarded)
	}
}

// walkXFF walks a comma-separated X-Forwarded-For list from the right.
func (r *Resolver) walkXFF(last netip.Addr, h []byte) netip.Addr {
	end := len(h)
	for end > 0 {
		start := 0
		for i := end - 1; i >= 0; i-- {
			if h[i] == ',' {
				start = i + 1
				break
			}
		}
		hop := ascii.TrimOWS(h[start:end])
		if start > 0 {
			end = start - 1
		} else {
			end = -1
		}
		if len(hop) == 0 {
			continue // empty list element (RFC 9110 5.6.1)
		}
		a, ok := parseNode(hop)
		if !ok {
			return last
		}
		if !r.Trusted(a) {
			return a
		}
		last = a
	}
	return last
}

// fwdHop is one Forwarded element as located by scanForwarded.
type fwdHop struct {
	start, end int // the for= value, unquoted span
	kind       hopKind
}

type hopKind uint8

const (
	hopAddr   hopKind = iota // a for= value to parse as node
	hopOpaque                // no usable identity: stops the walk
)

// walkForwarded walks an RFC 7239 Forwarded header from the right.
func (r *Resolver) walkForwarded(last netip.Addr, h []byte) netip.Addr {
	var buf [16]fwdHop
	hops := scanForwarded(h, buf[:0])
	for i := len(hops) - 1; i >= 0; i-- {
		hp := hops[i]
		if hp.kind != hopAddr {
			return last
		}
		v := h[hp.start:hp.end]
		if isObfuscated(v) {
			return last
		}
		a, ok := parseNode(v)
		if !ok {
			return last
		}
		if !r.Trusted(a) {
			return a
		}
		last = a
	}
	return last
}

// scanForwarded parses the Forwarded grammar left to right and appends one hop
// per non-empty element. An element with a syntax error becomes one hopOpaque
// hop, and the scan goes on after the next comma outside a quoted string: the
// walk from the right stops at that element, not before the proxies' own
// elements to its right.
func scanForwarded(h []byte, hops []fwdHop) []fwdHop {
	i, n := 0, len(h)
	for i < n {
		hop := fwdHop{kind: hopOpaque}
		haveFor, empty, bad := false, true, false
		// One element: pairs separated by ';'.
		for {
			i = skipOWS(h, i)
			if i >= n || h[i] == ',' {
				break
			}
			if h[i] == ';' {
				i++
				continue
			}
			ns := i
			for i < n && isTchar(h[i]) {
				i++
			}
			name := h[ns:i]
			if len(name) == 0 || i >= n || h[i] != '=' {
				bad = true
				break
			}
			i++
			empty = false
			var vs, ve int
			if i < n && h[i] == '"' {
				i++
				vs = i
				for i < n && h[i] != '"' {
					if h[i] == '\\' || h[i] < 0x20 || h[i] == 0x7f {
						bad = true // escapes never belong in a node; refuse
						break
					}
					i++
				}
				if bad || i >= n {
					bad = true
					break
				}
				ve = i
				i++
			} else {
				vs = i
				for i < n && isValueChar(h[i]) {
					i++
				}
				ve = i
			}
			if vs == ve {
				bad = true
				break
			}
			if len(name) == 3 && ascii.Lower(name[0]) == 'f' && ascii.Lower(name[1]) == 'o' && ascii.Lower(name[2]) == 'r' {
				if haveFor {
					bad = true // a parameter must not repeat within an element
					break
				}
				haveFor = true
				hop = fwdHop{start: vs, end: ve, kind: hopAddr}
			}
			i = skipOWS(h, i)
			if i < n && h[i] != ';' && h[i] != ',' {
				bad = true
				break
			}
		}
		if bad {
			hops = append(hops, fwdHop{kind: hopOpaque})
			i = nextElement(h, i)
			continue
		}
		if !empty {
			hops = append(hops, hop)
		}
		if i < n && h[i] == ',' {
			i++
		}
	}
	return hops
}

// nextElement returns the index just after the first comma at or after i that
// is outside a quoted string (a backslash escapes the next byte inside one),
// or len(h) when there is none.
func nextElement(h []byte, i int) int {
	quoted := false
	for ; i < len(h); i++ {
		switch c := h[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			return i + 1
		}
	}
	return len(h)
}

// parseNode parses one hop: IPv4, IPv6, IPv4:port or [IPv6]:port. Zones are
// refused. The port, if any, must be 1-5 digits or an RFC 7239 obfuscated port.
func parseNode(b []byte) (netip.Addr, bool) {
	var host, port []byte
	hasPort := false
	if b[0] == '[' {
		j := indexByte(b, ']')
		if j < 0 {
			return netip.Addr{}, false
		}
		host = b[1:j]
		rest := b[j+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return netip.Addr{}, false
			}
			port, hasPort = rest[1:], true
		}
		if indexByte(host, ':') < 0 { // brackets are only for IPv6
			return netip.Addr{}, false
		}
	} else {
		c := countByte(b, ':')
		switch {
		case c == 1:
			j := indexByte(b, ':')
			host, port, hasPort = b[:j], b[j+1:], true
		default:
			host = b
		}
	}
	if hasPort && !validPort(port) {
		return netip.Addr{}, false
	}
	if len(host) == 0 || len(host) > 64 || indexByte(host, '%') >= 0 {
		return netip.Addr{}, false
	}
	// The string shares h's memory only for the call: ParseAddr keeps no
	// reference on success (zones, the one retained part, are refused above),
	// and the error it may return is dropped here.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(host), len(host)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func validPort(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	if p[0] == '_' { // obfuscated port, RFC 7239 6.3
		for _, c := range p[1:] {
			if !ascii.IsAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return len(p) > 1
	}
	if len(p) > 5 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isObfuscated reports whether a Forwarded node is "unknown" or an obfuscated
// identifier (RFC 7239 6.2, 6.3), with or without a port.
func isObfuscated(v []byte) bool {
	if len(v) > 0 && v[0] == '_' {
		return true
	}
	const u = "unknown"
	if len(v) < len(u) {
		return false
	}
	for k := 0; k < len(u); k++ {
		if ascii.Lower(v[k]) != u[k] {
			return false
		}
	}
	return len(v) == len(u) || v[len(u)] == ':'
}

// ParsePrefixes parses trusted proxy CIDRs ("10.0.0.0/8", "2001:db8::/32") and
// bare addresses ("192.0.2.7" becomes a /32). Host bits are masked off and
// IPv4-mapped IPv6 values are unmapped. Blank values are refused. The error
// names the offending value and wraps ErrInvalidPrefix.
func ParsePrefixes(values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for i, raw := range values {
		s := strings.TrimSpace(raw)
		if strings.Contains(s, "%") {
			return nil, fmt.Errorf("parse prefix %d %q: %w: zones are not allowed", i, raw, ErrInvalidPrefix)
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			q, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("parse prefix %d %q: %w: %w", i, raw, ErrInvalidPrefix, err)
			}
			p = q.Masked()
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("parse prefix %d %q: %w: %w", i, raw, ErrInvalidPrefix, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, normPrefix(p))
	}
	return out, nil
}

func normPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

func skipOWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func countByte(b []byte, c byte) int {
	n := 0
	for _, x := range b {
		if x == c {
			n++
		}
	}
	return n
}

// isTchar reports whether c is an RFC 9110 token character.
func isTchar(c byte) bool {
	if ascii.IsAlnum(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// isValueChar accepts token characters plus ':' '[' ']', leniently allowing
// unquoted IPv6 and ports that some proxies emit.
func isValueChar(c byte) bool {
	return isTchar(c) || c == ':' || c == '[' || c == ']'
}
