package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
	"github.com/refrouter/refrouter/internal/ascii"
)

// Meta is the metadata a node gossips about itself. It is a value type;
// copies are independent.
type Meta struct {
	Name        string  `json:"name"`
	Region      string  `json:"region"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	PublicURL   string  `json:"public_url"`
	ClusterAddr string  `json:"cluster_addr"`
	Voter       bool    `json:"voter"`
	Role        string  `json:"role"` // leader, follower, nonvoter or candidate
	Load        float64 `json:"load"`
	Version     string  `json:"version"`
	// HasState is true once the node has raft state (it was bootstrapped or
	// joined a raft configuration); bootstrap never happens while any alive
	// member reports it.
	HasState bool `json:"has_state"`
}

// Roles reported in Meta.Role.
const (
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleNonvoter  = "nonvoter"
	RoleCandidate = "candidate"
)

// ErrMetaTooLarge reports node metadata over memberlist's MetaMaxSize.
var ErrMetaTooLarge = errors.New("cluster: node metadata too large")

// wireMeta is the compact gossip form of Meta.
type wireMeta struct {
	Region      string  `json:"r,omitempty"`
	Lat         float64 `json:"la,omitempty"`
	Lon         float64 `json:"lo,omitempty"`
	PublicURL   string  `json:"u,omitempty"`
	ClusterAddr string  `json:"c,omitempty"`
	Voter       bool    `json:"v,omitempty"`
	Role        string  `json:"ro,omitempty"`
	Load        float64 `json:"l,omitempty"`
	Version     string  `json:"ve,omitempty"`
	HasState    bool    `json:"s,omitempty"`
	Leaving     bool    `json:"x,omitempty"` // set just before a graceful Leave
}

// encodeMeta encodes m for gossip (the name travels as the memberlist node
// name) and checks memberlist's size limit.
func encodeMeta(m Meta) ([]byte, error) { return encodeWireMeta(m, false) }

func encodeWireMeta(m Meta, leaving bool) ([]byte, error) {
	if math.IsNaN(m.Load) || math.IsInf(m.Load, 0) {
		m.Load = 0
	}
	b, err := json.Marshal(wireMeta{
		Region: m.Region, Lat: m.Lat, Lon: m.Lon, PublicURL: m.PublicURL,
		ClusterAddr: m.ClusterAddr, Voter: m.Voter, Role: m.Role, Load: m.Load,
		Version: m.Version, HasState: m.HasState, Leaving: leaving,
	})
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: node metadata is %d bytes, limit %d: %w", len(b), memberlist.MetaMaxSize, ErrMetaTooLarge)
	}
	return b, nil
}

// decodeMeta decodes gossiped metadata of the named node and whether it
// announced a graceful leave. Metadata that does not decode, or fails
// validateMeta, is returned as Meta{Name: name} (no public URL, no cluster
// address, not voter-capable, no raft state) with the error: anyone who
// can gossip chooses these bytes.
func decodeMeta(name string, b []byte) (Meta, bool, error) {
	var w wireMeta
	if len(b) > 0 {
		if err := json.Unmarshal(b, &w); err != nil {
			return Meta{Name: name}, false, fmt.Errorf("decode metadata of %q: %w", name, err)
		}
	}
	m := Meta{
		Name: name, Region: w.Region, Lat: w.Lat, Lon: w.Lon, PublicURL: w.PublicURL,
		ClusterAddr: w.ClusterAddr, Voter: w.Voter, Role: w.Role, Load: w.Load,
		Version: w.Version, HasState: w.HasState,
	}
	if err := validateMeta(m); err != nil {
		return Meta{Name: name}, w.Leaving, fmt.Errorf("metadata of %q: %w", name, err)
	}
	return m, w.Leaving, nil
}

// ErrBadMeta is the cause of decodeMeta's error for metadata that decodes
// but has an unacceptable value.
var ErrBadMeta = errors.New("cluster: unacceptable node metadata")

// Limits on gossiped text fields (bytes).
const (
	maxNameLen  = 128 // Name, as Config allows
	maxMetaText = 64  // Region, Role, Version
	maxHostLen  = memberlist.MetaMaxSize
)

// validateMeta checks metadata received through gossip:
//
//   - Name (the memberlist node name) at most 128 bytes of printable
//     characters;
//   - Lat within [-90, 90], Lon within [-180, 180], Load finite;
//   - PublicURL empty, or scheme://host[:port][/path] where scheme is http
//     or https (any case), host a DNS name (letters, digits, '-', '.', '_')
//     or an IP address (IPv6 in brackets, no zone), port 1-65535, and path
//     made of RFC 3986 path characters only (unreserved, sub-delims, ':',
//     '@', '/', and %XX escapes): no userinfo, query or fragment, no
//     spaces, control or non-ASCII bytes, so the URL can be put in a
//     Location header or a JSON document as is;
//   - ClusterAddr empty, or host:port with such a host (IPv6 without
//     brackets as net.SplitHostPort returns it) and port 1-65535;
//   - Region, Role and Version at most 64 bytes of printable characters.
func validateMeta(m Meta) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), ErrBadMeta)
	}
	if err := checkText(m.Name, maxNameLen); err != nil {
		return bad("name: %v", err)
	}
	if math.IsNaN(m.Lat) || m.Lat < -90 || m.Lat > 90 {
		return bad("latitude %v outside [-90, 90]", m.Lat)
	}
	if math.IsNaN(m.Lon) || m.Lon < -180 || m.Lon > 180 {
		return bad("longitude %v outside [-180, 180]", m.Lon)
	}
	if math.IsNaN(m.Load) || math.IsInf(m.Load, 0) {
		return bad("load %v not finite", m.Load)
	}
	if m.PublicURL != "" {
		if err := CheckPublicURL(m.PublicURL); err != nil {
			return bad("public URL %q: %v", m.PublicURL, err)
		}
	}
	if m.ClusterAddr != "" {
		if err := checkClusterAddr(m.ClusterAddr); err != nil {
			return bad("cluster address %q: %v", m.ClusterAddr, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"region", m.Region}, {"role", m.Role}, {"version", m.Version}} {
		if err := checkText(f.v, maxMetaText); err != nil {
			return bad("%s %q: %v", f.name, f.v, err)
		}
	}
	return nil
}

func checkText(s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("longer than %d bytes", limit)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == utf8.RuneError {
			return fmt.Errorf("character %U not allowed", r)
		}
	}
	return nil
}

// printableASCII reports whether s is non-empty and made of bytes 0x21-0x7e.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

// CheckPublicURL checks a node's public URL as peers accept it in gossip:
// an absolute http or https URL of printable ASCII, a host name, IPv4 or
// bracketed IPv6 host, an optional port and path, no user info, query or
// fragment (see validateMeta). A URL that passes is safe to write into a
// Location header as it is.
func CheckPublicURL(s string) error {
	if !printableASCII(s) {
		return errors.New("not printable ASCII")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return errors.New("not an absolute http or https URL")
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if strings.ContainsAny(authority, "@?#") {
		return errors.New("userinfo, query or fragment not allowed")
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && i > strings.LastIndexByte(authority, ']') {
		host, port = authority[:i], authority[i+1:]
		if err := checkPort(port); err != nil {
			return err
		}
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return errors.New("bad IPv6 host")
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("bad IPv6 host")
		}
	} else if err := checkHostName(host); err != nil {
		return err
	}
	for i := 0; i < len(path); i++ {
		switch ch := path[i]; {
		case ch == '%':
			if i+2 >= len(path) || !ascii.IsHex(path[i+1]) || !ascii.IsHex(path[i+2]) {
				return errors.New("bad escape in path")
			}
			i += 2
		case !isPathChar(ch):
			return fmt.Errorf("character %q not allowed in path", ch)
		}
	}
	// Whatever consumes the URL parses it with net/url: it must agree.
	u, err := url.Parse(s)
	if err != nil || u.Host != authority || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return errors.New("not a plain absolute URL")
	}
	return nil
}

// checkClusterAddr checks a gossiped cluster address; see validateMeta.
func checkClusterAddr(s string) error {
	if !printableASCII(s) {
		return errors.New("not printable ASCII")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if err := checkPort(port); err != nil {
		return err
	}
	if strings.Contains(host, ":") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return errors.New("bad IPv6 host")
		}
		return nil
	}
	return checkHostName(host)
}

// checkHostName accepts a DNS name or an IPv4 address: letters, digits,
// '-', '.' and '_'.
func checkHostName(h string) error {
	if h == "" || len(h) > maxHostLen {
		return errors.New("missing or overlong host")
	}
	for i := 0; i < len(h); i++ {
		ch := h[i]
		if !(ascii.IsAlnum(ch) || ch == '-' || ch == '.' || ch == '_') {
			return fmt.Errorf("character %q not allowed in host", ch)
		}
	}
	return nil
}

func checkPort(p string) error {
	if p == "" || len(p) > 5 {
		return errors.New("bad port")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return errors.New("bad port")
		}
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return errors.New("port outside 1-65535")
	}
	return nil
}

// isPathChar: RFC 3986 pchar (without pct-encoded) and '/'.
func isPathChar(ch byte) bool {
	return ascii.IsAlnum(ch) || strings.IndexByte("-._~!$&'()*+,;=:@/", ch) >= 0
}

// checkOwnMeta applies validateMeta to this node's own metadata, so a
// value its peers would reject (and then ignore the node's metadata
// altogether) is a configuration error instead.
func checkOwnMeta(m Meta) error {
	err := validateMeta(m)
	if err == nil {
		return nil
	}
	field, value := "Meta", ""
	switch {
	case m.Lat < -90 || m.Lat > 90 || math.IsNaN(m.Lat):
		field, value = "Lat", fmt.Sprint(m.Lat)
	case m.Lon < -180 || m.Lon > 180 || math.IsNaN(m.Lon):
		field, value = "Lon", fmt.Sprint(m.Lon)
	case m.PublicURL != "" && CheckPublicURL(m.PublicURL) != nil:
		field, value = "PublicURL", m.PublicURL
	case m.ClusterAddr != "" && checkClusterAddr(m.ClusterAddr) != nil:
		field, value = "ClusterAddr", m.ClusterAddr
	case checkText(m.Name, maxNameLen) != nil:
		field, value = "Name", m.Name
	case checkText(m.Region, maxMetaText) != nil:
		field, value = "Region", m.Region
	case checkText(m.Version, maxMetaText) != nil:
		field, value = "Version", m.Version
	}
	return &ConfigError{Field: field, Value: value, Err: fmt.Errorf("peers would reject it (%v): %w", err, ErrInvalidConfig)}
}

// checkMetaWorstCase encodes m with the longest role and load so that later
// updates of those fields cannot overflow the limit.
func checkMetaWorstCase(m Meta) error {
	m.Role = RoleCandidate
	m.Load = -1.2345678901234567e-300
	m.HasState = true
	_, err := encodeWireMeta(m, true)
	return err
}
