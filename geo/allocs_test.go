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
