package geo

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/refrouter/refrouter/geo/geotest"
)

const benchNetworks = 100_000

// BenchmarkLookup builds a database of benchNetworks networks once, then
// measures LookupPoint (hot path, 0 allocs) and Lookup (full) on addresses
// spread over it.
func BenchmarkLookup(b *testing.B) {
	recs := geotest.GenerateRecords(benchNetworks, 1)
	start := time.Now()
	path := filepath.Join(b.TempDir(), "bench.mmdb")
	geotest.MustBuild(b, path, geotest.SchemaCity, recs, geotest.Options{})
	b.Logf("built %d networks in %v", len(recs), time.Since(start))
	start = time.Now()
	d, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.Logf("opened (with record check) in %v", time.Since(start))
	addrs := make([]netip.Addr, 0, 4096)
	for i := 0; i < len(recs) && len(addrs) < cap(addrs); i += len(recs) / cap(addrs) {
		addrs = append(addrs, netip.MustParsePrefix(recs[i].Network).Addr().Next())
	}
	mask := len(addrs) - 1 // 4096 is a power of two

	b.Run("Point", func(b *testing.B) {
		b.ReportAllocs()
		var p Point
		i := 0
		for b.Loop() {
			if !d.LookupPoint(addrs[i&mask], &p) {
				b.Fatalf("miss %s", addrs[i&mask])
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
	b.Run("PointParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var p Point
			i := 0
			for pb.Next() {
				d.LookupPoint(addrs[i&mask], &p)
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
	b.Run("Full", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := d.Lookup(addrs[i&mask]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Mapped", func(b *testing.B) {
		b.ReportAllocs()
		var p Point
		mapped := netip.AddrFrom16(addrs[0].As16())
		for b.Loop() {
			d.LookupPoint(mapped, &p)
		}
	})
}
