package rules

import (
	"net/netip"
	"testing"
	"time"
)

func FuzzParseRules(f *testing.F) {
	f.Add(exampleRules)
	f.Add(`null`)
	f.Add(`[]`)
	f.Add(`[{"split":[{"destination":"https://live.example.com/a","weight":1},{"destination":"liveapp://x","weight":2}]}]`)
	f.Add(`[{"when":{"time":{"daily_from":"22:00","daily_to":"02:00","tz":"Europe/Berlin"}},"destination":"https://live.example.com/t"}]`)
	f.Add(`[{"destination":"https://live.example.com@evil.net/"}]`)
	f.Add(`[{"destination":"//evil.net"}]`)
	hosts := []string{"live.example.com", "liveapp://"}
	reqs := []Request{
		{},
		{Country: "DE", Continent: "EU", UA: []byte(uaIPhone), AcceptLanguage: []byte("de"), IP: netip.MustParseAddr("203.0.113.9"),
			Now: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC), Sticky: []byte("0.1")},
		{Country: "US", UA: []byte(uaWindows), AcceptLanguage: []byte("en-GB;q=0.5,*"), IP: netip.MustParseAddr("2001:db8::1"),
			Now: time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC), Sticky: []byte("abc")},
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := Parse([]byte(raw), hosts)
		if err != nil {
			if s != nil {
				t.Fatal("non-nil Set with error")
			}
			return
		}
		for _, d := range s.Destinations() {
			if err := CheckDestination(d, hosts); err != nil {
				t.Fatalf("parsed destination %q fails check: %v", d, err)
			}
		}
		for i := range reqs {
			dest, _, ok := s.Match(&reqs[i])
			if ok {
				if err := CheckDestination(dest, hosts); err != nil {
					t.Fatalf("Match returned %q: %v", dest, err)
				}
			}
		}
	})
}
