package rules

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/refrouter/refrouter/internal/ascii"
)

// ErrDestination is wrapped by CheckDestination (and by Parse for a rule
// destination) when a URL is not an allowed redirect target.
var ErrDestination = errors.New("rules: destination not allowed")

// MaxDestinationLen bounds a destination URL.
const MaxDestinationLen = 2048

// neverSchemes are refused even when listed in allowedHosts.
var neverSchemes = [...]string{"javascript", "data", "vbscript", "file", "blob", "about", "filesystem"}

// CheckDestination reports whether dest may be used as a redirect target under
// the campaign's allow-list. It returns nil or an error wrapping ErrDestination
// that says why. It is pure and safe for concurrent use.
//
// allowedHosts holds lower-case entries of three kinds:
//   - "live.example.com": an http(s) URL whose host is exactly this, with no
//     explicit port;
//   - "live.example.com:8443": the same host with that explicit port;
//   - "liveapp://": an app deep link of that scheme (any rest).
//
// Comparison is ASCII case-insensitive and byte-exact otherwise: hosts must be
// given in punycode (no IDN conversion is done, non-ASCII hosts are refused).
// Refused always: userinfo, backslashes, control characters and spaces,
// percent-escapes or other odd bytes in the host, scheme-relative ("//evil")
// and path-only URLs, and javascript:, data:, file: and similar schemes.
func CheckDestination(dest string, allowedHosts []string) error {
	if dest == "" {
		return fmt.Errorf("empty destination: %w", ErrDestination)
	}
	if len(dest) > MaxDestinationLen {
		return fmt.Errorf("destination longer than %d bytes: %w", MaxDestinationLen, ErrDestination)
	}
	for i := 0; i < len(dest); i++ {
		c := dest[i]
		if c <= ' ' || c == 0x7f || c == '\\' || c >= 0x80 {
			return fmt.Errorf("destination %q: byte %#x at %d: %w", dest, c, i, ErrDestination)
		}
	}
	colon := strings.IndexByte(dest, ':')
	if colon <= 0 || !strings.HasPrefix(dest[colon:], "://") {
		return fmt.Errorf("destination %q: not an absolute scheme:// URL: %w", dest, ErrDestination)
	}
	scheme := strings.ToLower(dest[:colon])
	if !validScheme(scheme) {
		return fmt.Errorf("destination %q: bad scheme: %w", dest, ErrDestination)
	}
	for _, s := range neverSchemes {
		if scheme == s {
			return fmt.Errorf("destination %q: scheme %q is never allowed: %w", dest, scheme, ErrDestination)
		}
	}
	if scheme != "http" && scheme != "https" {
		if !slices.ContainsFunc(allowedHosts, func(h string) bool { return asciiEqualFold(h, scheme+"://") }) {
			return fmt.Errorf("destination %q: scheme %q not in allowed_hosts: %w", dest, scheme, ErrDestination)
		}
		// An app deep link's rest is the app's to read, but it must still
		// be a URL (no broken %-escape) for the apps and browsers given it.
		if _, err := url.Parse(dest); err != nil {
			return fmt.Errorf("destination %q: %w: %w", dest, ErrDestination, err)
		}
		return nil
	}
	rest := dest[colon+3:]
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	auth := rest[:authEnd]
	if auth == "" {
		return fmt.Errorf("destination %q: no host: %w", dest, ErrDestination)
	}
	if strings.Contains(auth, "@") {
		return fmt.Errorf("destination %q: userinfo not allowed: %w", dest, ErrDestination)
	}
	host, port := auth, ""
	if i := strings.LastIndexByte(auth, ':'); i >= 0 {
		host, port = auth[:i], auth[i+1:]
		if port == "" {
			return fmt.Errorf("destination %q: empty port: %w", dest, ErrDestination)
		}
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return fmt.Errorf("destination %q: bad port %q: %w", dest, port, ErrDestination)
			}
		}
	}
	if !validHost(host) {
		return fmt.Errorf("destination %q: bad host %q: %w", dest, host, ErrDestination)
	}
	// Cross-check with net/url so that what we approved is what a URL parser
	// sees as the host.
	u, err := url.Parse(dest)
	if err != nil {
		return fmt.Errorf("destination %q: %w: %w", dest, ErrDestination, err)
	}
	if u.User != nil || u.Opaque != "" || !asciiEqualFold(u.Host, auth) {
		return fmt.Errorf("destination %q: ambiguous authority: %w", dest, ErrDestination)
	}
	want := auth
	for _, h := range allowedHosts {
		if asciiEqualFold(h, want) {
			return nil
		}
	}
	if port != "" {
		return fmt.Errorf("destination %q: host:port %q not in allowed_hosts: %w", dest, strings.ToLower(auth), ErrDestination)
	}
	return fmt.Errorf("destination %q: host %q not in allowed_hosts: %w", dest, strings.ToLower(host), ErrDestination)
}

// validScheme checks RFC 3986 scheme syntax (already lower-cased).
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validHost accepts an ASCII DNS name of letters, digits, '-' and '.', with no
// empty labels. IP literals in brackets are refused (list a name instead).
func validHost(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// asciiEqualFold is strings.EqualFold restricted to ASCII, so that no Unicode
// folding (such as the Kelvin sign matching 'k') can widen a match.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if ascii.Lower(a[i]) != ascii.Lower(b[i]) {
			return false
		}
	}
	return true
}

// CheckAllowedHosts validates a campaign's allowed_hosts list: every entry
// must be a DNS host name ("live.example.com"), a host with a port
// ("live.example.com:8443") or a deep-link scheme ("liveapp://"; http, https
// and the always-refused schemes are not accepted as schemes). The error names
// the first bad entry and wraps ErrInvalid.
func CheckAllowedHosts(hosts []string) error {
	for i, h := range hosts {
		if scheme, ok := strings.CutSuffix(h, "://"); ok {
			s := ascii.LowerString(scheme)
			bad := !validScheme(s) || s == "http" || s == "https"
			for _, n := range neverSchemes {
				bad = bad || s == n
			}
			if bad {
				return fmt.Errorf("allowed_hosts[%d] %q: %w: not a usable deep-link scheme", i, h, ErrInvalid)
			}
			continue
		}
		host := h
		if j := strings.LastIndexByte(h, ':'); j >= 0 {
			host = h[:j]
			port := h[j+1:]
			if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
				return fmt.Errorf("allowed_hosts[%d] %q: %w: bad port", i, h, ErrInvalid)
			}
		}
		if !validHost(host) {
			return fmt.Errorf("allowed_hosts[%d] %q: %w: not an ASCII host name (use punycode)", i, h, ErrInvalid)
		}
	}
	return nil
}
