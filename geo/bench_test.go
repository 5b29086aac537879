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
	b.Run("PointUncached", func(b *testing.B) {
		// Point with the record cache bypassed: the cost of a miss.
		b.ReportAllocs()
		var p Point
		i := 0
		for b.Loop() {
			if !d.lookupPoint(addrs[i&mask], &p, false) {
				b.Fatalf("miss %s", addrs[i&mask])
			}
			i++
		}
	})
	b.Run("PointSameRecord", func(b *testing.B) {
		// One address over and over: every lookup after the first hits the
		// record cache.
		b.ReportAllocs()
		var p Point
		ip := addrs[0]
		for b.Loop() {
			if !d.LookupPoint(ip, &p) {
				b.Fatalf("miss %s", ip)
			}
		}
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

// distinctRecords returns GenerateRecords(n, seed) with a latitude unique to
// each network, so that no two networks share a data record.
func distinctRecords(n int, seed uint64) []geotest.Record {
	recs := geotest.GenerateRecords(n, seed)
	for i := range recs {
		recs[i].NoCoords = false
		recs[i].Lat = float64(i%160_000)/2_000 - 40 // step 0.0005°, within ±90
		recs[i].Lon = float64(i%1_000) / 10
	}
	return recs
}

// BenchmarkLookupDistinct measures LookupPoint over a database in which
// every one of benchNetworks networks has its own record (GeoLite2-City has
// ~100k+ distinct records): Hot4k cycles over 4,096 distinct records (a hot
// set that fits the record cache), All cycles over every record in tree
// order, far more than the cache holds, so nearly every lookup misses.
func BenchmarkLookupDistinct(b *testing.B) {
	recs := distinctRecords(benchNetworks, 1)
	path := filepath.Join(b.TempDir(), "distinct.mmdb")
	geotest.MustBuild(b, path, geotest.SchemaCity, recs, geotest.Options{})
	d, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	all := make([]netip.Addr, len(recs))
	for i, r := range recs {
		all[i] = netip.MustParsePrefix(r.Network).Addr().Next()
	}
	hot := make([]netip.Addr, 0, 4096)
	for i := 0; len(hot) < cap(hot); i += len(all) / cap(hot) {
		hot = append(hot, all[i])
	}
	run := func(name string, addrs []netip.Addr) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var p Point
			i := 0
			for b.Loop() {
				if !d.LookupPoint(addrs[i], &p) {
					b.Fatalf("miss %s", addrs[i])
				}
				if i++; i == len(addrs) {
					i = 0
				}
			}
		})
	}
	run("Hot4k", hot)
	run("All", all)
}
