//go:build !race

package bots

import (
	"hash/maphash"
	"testing"
)

func TestIsBotAllocs(t *testing.T) {
	for _, ua := range []string{typicalUA, "Googlebot/2.1", ""} {
		b := []byte(ua)
		if n := testing.AllocsPerRun(100, func() { IsBot(b) }); n != 0 {
			t.Fatalf("IsBot(%q): %v allocs/op, want 0", ua, n)
		}
	}
}

// TestMatchAllocs checks cache hits, cache misses (the slot emptied before
// each call, so every call hashes, scans and inserts) and the scan alone.
func TestMatchAllocs(t *testing.T) {
	m := defaultMatcher
	uas := []string{"x", "CUBOT X30 Build", "Mozilla/5.0 (compatible; TikTokSpider; ttspider-feedback@tiktok.com)"}
	for _, bu := range benchUAs {
		uas = append(uas, bu.ua)
	}
	for _, ua := range uas {
		b := []byte(ua)
		slot := &m.slots[maphash.Bytes(m.seed, b)&m.mask]
		checks := []struct {
			name string
			f    func()
		}{
			{"hit", func() { m.Match(b) }},
			{"miss", func() { slot.Store(0); m.Match(b) }},
			{"scan", func() { m.scan(b) }},
		}
		for _, c := range checks {
			if n := testing.AllocsPerRun(100, c.f); n != 0 {
				t.Errorf("%s %q: %v allocs/op, want 0", c.name, ua, n)
			}
		}
	}
}
