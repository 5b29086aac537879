//go:build !race

package clientip

import (
	"net/netip"
	"testing"
)

func TestFromAllocs(t *testing.T) {
	r := NewResolver(mustPrefixes(t, trustedCIDRs...), HeaderAuto)
	remote := netip.MustParseAddr("10.1.2.3")
	for _, h := range []struct{ xff, fwd string }{
		{"203.0.113.9, 10.9.9.9", ""},
		{"[2001:db8::17]:443", ""},
		{"", `for=192.0.2.60;proto=http, for="[2001:db8:ffff::9]:80"`},
	} {
		xff, fwd := []byte(h.xff), []byte(h.fwd)
		if n := testing.AllocsPerRun(100, func() { _ = r.From(remote, xff, fwd) }); n != 0 {
			t.Errorf("From(xff=%q, fwd=%q) allocs = %v, want 0", h.xff, h.fwd, n)
		}
	}
}
