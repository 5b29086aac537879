//go:build !race

package geo

import (
	"testing"

	"github.com/refrouter/refrouter/geo/geotest"
)

// TestLookupPointAllocs locks in the 0-allocation budget of the hot path
// for every schema, for found, centroid, mapped and missing addresses.
func TestLookupPointAllocs(t *testing.T) {
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaCountry, geotest.SchemaFlat} {
		d, _ := newTestDB(t, s, geotest.DemoRecords())
		for _, ip := range []string{geotest.DemoFrankfurt, geotest.DemoSingapore, geotest.DemoAshburn6, "::ffff:" + geotest.DemoSydney, "8.8.8.8"} {
			addr := mustAddr(t, ip)
			var p Point
			if n := testing.AllocsPerRun(200, func() { d.LookupPoint(addr, &p) }); n != 0 {
				t.Errorf("%s %s: LookupPoint allocs = %v, want 0", s, ip, n)
			}
		}
	}
}

// TestLookupPointCacheAllocs: a cache hit allocates nothing, and neither
// does a miss that evicts and refills a slot.
func TestLookupPointCacheAllocs(t *testing.T) {
	d, _ := newTestDB(t, geotest.SchemaCity, geotest.DemoRecords())
	f := d.cur.Load().files[0]
	fra, tyo := mustAddr(t, geotest.DemoFrankfurt), mustAddr(t, geotest.DemoTokyo)
	offFra, _ := pointOffset(f, fra)
	offTyo, _ := pointOffset(f, tyo)
	if offFra == offTyo {
		t.Fatal("demo addresses share a record")
	}
	var p Point
	d.LookupPoint(fra, &p)
	if _, hit := f.points.get(offFra); !hit {
		t.Fatal("lookup did not fill the cache")
	}
	if n := testing.AllocsPerRun(1000, func() { d.LookupPoint(fra, &p) }); n != 0 {
		t.Errorf("hit: LookupPoint allocs = %v, want 0", n)
	}

	// One slot: the two addresses evict each other on every lookup.
	setPointCaches(d, 1)
	d.LookupPoint(fra, &p)
	d.LookupPoint(tyo, &p)
	if _, hit := f.points.get(offFra); hit {
		t.Fatal("one-slot table holds both records")
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if i++; i%2 == 0 {
			d.LookupPoint(fra, &p)
		} else {
			d.LookupPoint(tyo, &p)
		}
	}); n != 0 {
		t.Errorf("miss and insert: LookupPoint allocs = %v, want 0", n)
	}
}
