package geo

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"

	"github.com/refrouter/refrouter/geo/geotest"
)

// seedFiles returns the bytes of small databases in every schema and IP
// version, for fuzz seeds.
func seedFiles(tb testing.TB) [][]byte {
	tb.Helper()
	dir := tb.TempDir()
	var out [][]byte
	v4 := geotest.DemoRecords()[:9]
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaCountry, geotest.SchemaFlat} {
		for _, opt := range []geotest.Options{{}, {IPVersion: 4, RecordSize: 24}} {
			recs := geotest.DemoRecords()
			if opt.IPVersion == 4 {
				recs = v4
			}
			p := filepath.Join(dir, "seed.mmdb")
			geotest.MustBuild(tb, p, s, recs, opt)
			b, err := os.ReadFile(p)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

var fuzzAddrs = []netip.Addr{
	netip.MustParseAddr(geotest.DemoFrankfurt),
	netip.MustParseAddr(geotest.DemoSingapore),
	netip.MustParseAddr(geotest.DemoAshburn6),
	netip.MustParseAddr("::ffff:" + geotest.DemoHongKong),
	netip.MustParseAddr("8.8.8.8"),
	netip.MustParseAddr("::"),
	netip.MustParseAddr("ffff::1"),
}

// checkFields asserts the invariants every decoded record must hold.
func checkFields(t *testing.T, f *fields) {
	t.Helper()
	if f.hasLat && (math.IsNaN(f.lat) || math.Abs(f.lat) > 90) {
		t.Fatalf("bad latitude %v", f.lat)
	}
	if f.hasLon && (math.IsNaN(f.lon) || math.Abs(f.lon) > 180) {
		t.Fatalf("bad longitude %v", f.lon)
	}
	for _, c := range [][2]byte{f.country, f.regCountry, f.continent} {
		if c != ([2]byte{}) && (!isUpper(c[0]) || !isUpper(c[1])) {
			t.Fatalf("bad code %q", c[:])
		}
	}
	if len(f.city) > maxStringLen || len(f.timeZone) > maxStringLen {
		t.Fatalf("string too long")
	}
}

// FuzzOpenBytes feeds arbitrary bytes to the open and lookup paths, with
// and without the record check: no panics, and every answer well formed.
func FuzzOpenBytes(f *testing.F) {
	for _, b := range seedFiles(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:len(b)-10])
	}
	f.Add([]byte("\xAB\xCD\xEFMaxMind.com"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, check := range []bool{true, false} {
			fl, err := parse("fuzz", data, check)
			if err != nil {
				continue
			}
			d := &DB{closed: make(chan struct{})}
			d.cur.Store(&fileSet{files: []*file{fl}})
			for _, ip := range fuzzAddrs {
				var rec fields
				if _, _, err := fl.lookup(ip.Unmap(), &rec, true); err == nil {
					checkFields(t, &rec)
				}
				var p Point
				if d.LookupPoint(ip, &p) {
					if math.IsNaN(float64(p.Lat)) || math.IsNaN(float64(p.Lon)) || (!p.HasCoords && (p.Lat != 0 || p.Lon != 0)) {
						t.Fatalf("bad point %+v", p)
					}
				}
				loc, err := d.Lookup(ip)
				if err == nil && math.IsNaN(loc.Lat+loc.Lon) {
					t.Fatalf("bad location %+v", loc)
				}
			}
		}
	})
}

// FuzzDecodeRecord runs the record walker directly on arbitrary data
// sections at arbitrary offsets.
func FuzzDecodeRecord(f *testing.F) {
	for _, b := range seedFiles(f) {
		fl, err := parse("seed", b, true)
		if err != nil {
			f.Fatal(err)
		}
		for _, ip := range fuzzAddrs[:4] {
			if res := fl.reader.Lookup(ip.Unmap()); res.Found() {
				f.Add(fl.data, uint(res.Offset()))
			}
		}
	}
	f.Add([]byte{0xe1, 0x42, 'c', 'c', 0x42, 'd', 'e'}, uint(0)) // {"cc": "de"}
	f.Fuzz(func(t *testing.T, data []byte, off uint) {
		dec := mmdbdata.NewDecoder(data, 0)
		for _, full := range []bool{false, true} {
			var rec fields
			if err := decodeRecord(dec.CursorAt(off), data, &rec, full); err == nil {
				checkFields(t, &rec)
			}
		}
		_, _ = recordShape(dec.CursorAt(off))
	})
}
