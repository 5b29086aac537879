//go:build !race

package rules

import (
	"net/netip"
	"testing"
	"time"
)

func TestMatchAllocs(t *testing.T) {
	s := mustParse(t, exampleRules)
	reqs := []Request{
		{Country: "DE", Continent: "EU", UA: []byte(uaIPhone), AcceptLanguage: []byte("de-DE,de;q=0.9"),
			IP: netip.MustParseAddr("203.0.113.9"), Now: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)},
		{Country: "US", Sticky: []byte("some-click-id")},
		{Country: "US", Sticky: []byte("5.1")},
		{Country: "FR", UA: []byte(uaWindows), AcceptLanguage: []byte("fr-FR,fr;q=0.9")},
	}
	for i := range reqs {
		r := &reqs[i]
		if n := testing.AllocsPerRun(100, func() { _, _, _ = s.Match(r) }); n != 0 {
			t.Errorf("Match(req %d) allocs = %v, want 0", i, n)
		}
	}
	ua := []byte(uaIPhone)
	if n := testing.AllocsPerRun(100, func() { _, _ = ClassifyUA(ua) }); n != 0 {
		t.Errorf("ClassifyUA allocs = %v", n)
	}
}
