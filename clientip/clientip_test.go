package clientip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func mustPrefixes(tb testing.TB, s ...string) []netip.Prefix {
	tb.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		tb.Fatalf("ParsePrefixes(%q): %v", s, err)
	}
	return p
}

var trustedCIDRs = []string{"10.0.0.0/8", "192.168.1.1", "2001:db8:ffff::/48", "::1"}

type fromCase struct {
	name      string
	remote    string
	xff       string
	forwarded string
	header    Header
	want      string
}

var fromCases = []fromCase{
	{name: "untrusted peer, no header", remote: "198.51.100.7", want: "198.51.100.7"},
	{name: "untrusted peer spoofs xff", remote: "198.51.100.7", xff: "1.2.3.4", want: "198.51.100.7"},
	{name: "untrusted peer spoofs forwarded", remote: "198.51.100.7", forwarded: "for=1.2.3.4", want: "198.51.100.7"},
	{name: "trusted peer, no header", remote: "10.1.2.3", want: "10.1.2.3"},
	{name: "one proxy", remote: "10.1.2.3", xff: "203.0.113.9", want: "203.0.113.9"},
	{name: "client spoof left of real hop", remote: "10.1.2.3", xff: "6.6.6.6, 203.0.113.9", want: "203.0.113.9"},
	{name: "multiple proxies", remote: "10.1.2.3", xff: "203.0.113.9, 10.9.9.9, 192.168.1.1", want: "203.0.113.9"},
	{name: "all trusted gives leftmost", remote: "10.1.2.3", xff: "10.0.0.5, 10.0.0.6", want: "10.0.0.5"},
	{name: "ipv6 client", remote: "10.1.2.3", xff: "2001:db8::17", want: "2001:db8::17"},
	{name: "ipv6 proxy ipv6 client", remote: "2001:db8:ffff::1", xff: "2001:db8:1::5, 2001:db8:ffff::2", want: "2001:db8:1::5"},
	{name: "loopback trusted", remote: "::1", xff: "203.0.113.9", want: "203.0.113.9"},
	{name: "mapped remote", remote: "::ffff:10.1.2.3", xff: "203.0.113.9", want: "203.0.113.9"},
	{name: "mapped hop unmapped", remote: "10.1.2.3", xff: "::ffff:203.0.113.9", want: "203.0.113.9"},
	{name: "v4 with port", remote: "10.1.2.3", xff: "203.0.113.9:5555", want: "203.0.113.9"},
	{name: "bracketed v6 with port", remote: "10.1.2.3", xff: "[2001:db8::17]:443", want: "2001:db8::17"},
	{name: "garbage stops at remote", remote: "10.1.2.3", xff: "not-an-ip", want: "10.1.2.3"},
	{name: "garbage after trusted hop", remote: "10.1.2.3", xff: "203.0.113.9, garbage, 10.0.0.5", want: "10.0.0.5"},
	{name: "garbage left of client ignored", remote: "10.1.2.3", xff: "garbage, 203.0.113.9", want: "203.0.113.9"},
	{name: "zone refused", remote: "10.1.2.3", xff: "fe80::1%eth0", want: "10.1.2.3"},
	{name: "bad port", remote: "10.1.2.3", xff: "203.0.113.9:99999x", want: "10.1.2.3"},
	{name: "brackets around v4", remote: "10.1.2.3", xff: "[203.0.113.9]", want: "10.1.2.3"},
	{name: "empty elements skipped", remote: "10.1.2.3", xff: " , 203.0.113.9 ,, ", want: "203.0.113.9"},
	{name: "only commas", remote: "10.1.2.3", xff: ",,,", forwarded: "for=203.0.113.1", header: HeaderXFF, want: "10.1.2.3"},

	{name: "fwd simple", remote: "10.1.2.3", forwarded: "for=203.0.113.9", want: "203.0.113.9"},
	{name: "fwd params", remote: "10.1.2.3", forwarded: "for=192.0.2.60;proto=http;by=203.0.113.43", want: "192.0.2.60"},
	{name: "fwd case insensitive name", remote: "10.1.2.3", forwarded: "For=192.0.2.60", want: "192.0.2.60"},
	{name: "fwd quoted v6 port", remote: "10.1.2.3", forwarded: `for="[2001:db8:cafe::17]:4711"`, want: "2001:db8:cafe::17"},
	{name: "fwd chain", remote: "10.1.2.3", forwarded: `for=6.6.6.6, for=192.0.2.43, for="[2001:db8:ffff::9]"`, want: "192.0.2.43"},
	{name: "fwd quoted comma in other param", remote: "10.1.2.3", forwarded: `for=192.0.2.43;host="a,b", for=10.0.0.9`, want: "192.0.2.43"},
	{name: "fwd obfuscated stops", remote: "10.1.2.3", forwarded: `for=6.6.6.6, for=_hidden, for=10.0.0.9`, want: "10.0.0.9"},
	{name: "fwd unknown stops", remote: "10.1.2.3", forwarded: `for=6.6.6.6, for=unknown`, want: "10.1.2.3"},
	{name: "fwd obfuscated port fine", remote: "10.1.2.3", forwarded: `for="192.0.2.43:_p1"`, want: "192.0.2.43"},
	{name: "fwd element without for stops", remote: "10.1.2.3", forwarded: `for=6.6.6.6, proto=https`, want: "10.1.2.3"},
	{name: "fwd unterminated quote", remote: "10.1.2.3", forwarded: `for="192.0.2.43, for=10.0.0.1`, want: "10.1.2.3"},
	{name: "fwd duplicate for", remote: "10.1.2.3", forwarded: `for=1.1.1.1;for=2.2.2.2`, want: "10.1.2.3"},
	{name: "fwd escape refused", remote: "10.1.2.3", forwarded: `for="1.1.1\.1"`, want: "10.1.2.3"},
	{name: "fwd missing value", remote: "10.1.2.3", forwarded: `for=`, want: "10.1.2.3"},
	{name: "fwd garbage", remote: "10.1.2.3", forwarded: `@@@`, want: "10.1.2.3"},
	{name: "fwd bad element left of client", remote: "10.1.2.3", forwarded: `x y, for=203.0.113.9`, want: "203.0.113.9"},
	{name: "fwd empty name left of client", remote: "10.1.2.3", forwarded: `=, for=203.0.113.9`, want: "203.0.113.9"},
	{name: "fwd empty for left of client", remote: "10.1.2.3", forwarded: `for=, for=203.0.113.9`, want: "203.0.113.9"},
	{name: "fwd duplicate for left of client", remote: "10.1.2.3", forwarded: `for=1.2.3.4;for=5.6.7.8, for=203.0.113.9`, want: "203.0.113.9"},
	{name: "fwd bad element with quoted comma", remote: "10.1.2.3", forwarded: `x y="a,b\"c,d", for=203.0.113.9`, want: "203.0.113.9"},
	{name: "fwd bad element right of client stops", remote: "10.1.2.3", forwarded: `for=203.0.113.9, x y`, want: "10.1.2.3"},
	{name: "fwd all trusted leftmost", remote: "10.1.2.3", forwarded: `for=10.0.0.1, for=10.0.0.2`, want: "10.0.0.1"},
	{name: "fwd unquoted bracket lenient", remote: "10.1.2.3", forwarded: `for=[2001:db8::1]`, want: "2001:db8::1"},
	{name: "fwd many hops", remote: "10.1.2.3", forwarded: strings.Repeat("for=10.0.0.1, ", 40) + "for=203.0.113.5, for=10.0.0.2", want: "203.0.113.5"},
	{name: "fwd many trusted hops leftmost", remote: "10.1.2.3", forwarded: "for=10.0.0.7, " + strings.Repeat("for=10.0.0.1, ", 40) + "for=10.0.0.2", want: "10.0.0.7"},

	{name: "auto prefers xff", remote: "10.1.2.3", xff: "203.0.113.1", forwarded: "for=203.0.113.2", want: "203.0.113.1"},
	{name: "xff only ignores forwarded", remote: "10.1.2.3", forwarded: "for=203.0.113.2", header: HeaderXFF, want: "10.1.2.3"},
	{name: "forwarded only ignores xff", remote: "10.1.2.3", xff: "203.0.113.1", forwarded: "for=203.0.113.2", header: HeaderForwarded, want: "203.0.113.2"},
}

func TestFrom(t *testing.T) {
	trusted := mustPrefixes(t, trustedCIDRs...)
	for _, tc := range fromCases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewResolver(trusted, tc.header)
			got := r.From(netip.MustParseAddr(tc.remote), []byte(tc.xff), []byte(tc.forwarded))
			want := netip.MustParseAddr(tc.want)
			if got != want {
				t.Fatalf("From(%s, xff=%q, fwd=%q) = %v, want %v", tc.remote, tc.xff, tc.forwarded, got, want)
			}
			if tc.header == HeaderAuto {
				if g2 := From(netip.MustParseAddr(tc.remote), []byte(tc.xff), []byte(tc.forwarded), trusted); g2 != got {
					t.Fatalf("package From = %v, Resolver.From = %v", g2, got)
				}
			}
		})
	}
}

func TestZeroResolverTrustsNothing(t *testing.T) {
	var r Resolver
	remote := netip.MustParseAddr("10.1.2.3")
	if got := r.From(remote, []byte("1.2.3.4"), nil); got != remote {
		t.Fatalf("zero Resolver = %v, want remote", got)
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "cidrs and bare", in: []string{"10.0.0.0/8", " 192.168.1.1 ", "2001:db8::/32", "::1"}, want: []string{"10.0.0.0/8", "192.168.1.1/32", "2001:db8::/32", "::1/128"}},
		{name: "host bits masked", in: []string{"10.1.2.3/8"}, want: []string{"10.0.0.0/8"}},
		{name: "mapped unmapped", in: []string{"::ffff:10.0.0.0/104"}, want: []string{"10.0.0.0/8"}},
		{name: "empty list", in: nil, want: []string{}},
		{name: "bad value named", in: []string{"10.0.0.0/8", "bogus"}, wantErr: `"bogus"`},
		{name: "bad bits", in: []string{"10.0.0.0/33"}, wantErr: `"10.0.0.0/33"`},
		{name: "blank", in: []string{""}, wantErr: `""`},
		{name: "zone", in: []string{"fe80::1%eth0"}, wantErr: `"fe80::1%eth0"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePrefixes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidPrefix) {
					t.Fatalf("err = %v, want one naming %s wrapping ErrInvalidPrefix", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Fatalf("got[%d] = %v, want %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// checkResult asserts the fuzz invariant: the result is the remote or an
// address literally present (after unmapping) in the header.
func checkResult(t *testing.T, remote, got netip.Addr, header string) {
	t.Helper()
	if got == remote.Unmap() {
		return
	}
	if !got.IsValid() {
		t.Fatalf("invalid result for header %q", header)
	}
	for _, cand := range candidates(header) {
		if a, err := netip.ParseAddr(cand); err == nil && a.Unmap() == got {
			return
		}
	}
	t.Fatalf("result %v is neither remote %v nor in header %q", got, remote, header)
}

// candidates splits a header crudely into every substring between separators
// that could hold an address, a superset of what the parser accepts.
func candidates(h string) []string {
	f := strings.FieldsFunc(h, func(r rune) bool {
		return r == ',' || r == ';' || r == '"' || r == ' ' || r == '\t' || r == '=' || r == '[' || r == ']'
	})
	out := append([]string(nil), f...)
	for _, s := range f {
		if i := strings.LastIndexByte(s, ':'); i > 0 {
			out = append(out, s[:i])
		}
	}
	return out
}

func FuzzXFF(f *testing.F) {
	for _, tc := range fromCases {
		f.Add(tc.remote, tc.xff)
	}
	trusted := mustPrefixes(f, trustedCIDRs...)
	r := NewResolver(trusted, HeaderXFF)
	f.Fuzz(func(t *testing.T, remoteS, xff string) {
		remote, err := netip.ParseAddr(remoteS)
		if err != nil {
			remote = netip.MustParseAddr("10.0.0.1")
		}
		got := r.From(remote, []byte(xff), nil)
		checkResult(t, remote, got, xff)
	})
}

func FuzzForwarded(f *testing.F) {
	for _, tc := range fromCases {
		f.Add(tc.remote, tc.forwarded)
	}
	trusted := mustPrefixes(f, trustedCIDRs...)
	r := NewResolver(trusted, HeaderForwarded)
	f.Fuzz(func(t *testing.T, remoteS, fwd string) {
		remote, err := netip.ParseAddr(remoteS)
		if err != nil {
			remote = netip.MustParseAddr("10.0.0.1")
		}
		got := r.From(remote, nil, []byte(fwd))
		checkResult(t, remote, got, fwd)
	})
}

func BenchmarkFrom(b *testing.B) {
	trusted := mustPrefixes(b, trustedCIDRs...)
	r := NewResolver(trusted, HeaderAuto)
	remote := netip.MustParseAddr("10.1.2.3")
	benches := []struct {
		name, xff, fwd string
	}{
		{"untrusted", "", ""},
		{"xff-2hops", "203.0.113.9, 10.9.9.9", ""},
		{"xff-v6", "2001:db8::17", ""},
		{"forwarded", "", `for=192.0.2.60;proto=http, for="[2001:db8:ffff::9]:80"`},
	}
	for _, bb := range benches {
		xff, fwd := []byte(bb.xff), []byte(bb.fwd)
		rem := remote
		if bb.name == "untrusted" {
			rem = netip.MustParseAddr("198.51.100.7")
		}
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = r.From(rem, xff, fwd)
			}
		})
	}
}

func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "::ffff:10.0.0.0/104", "bogus", "", "1.2.3.4/33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePrefixes([]string{s})
		if err != nil {
			if !errors.Is(err, ErrInvalidPrefix) || !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Fatalf("error %v does not name %q or wrap ErrInvalidPrefix", err, s)
			}
			return
		}
		p := ps[0]
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() && p.Bits() >= 96 {
			t.Fatalf("ParsePrefixes(%q) = %v: not normalised", s, p)
		}
		again, err := ParsePrefixes([]string{p.String()})
		if err != nil || again[0] != p {
			t.Fatalf("round trip of %v: %v %v", p, again, err)
		}
	})
}
