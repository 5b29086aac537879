package geo

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/refrouter/refrouter/geo/geotest"
)

// setPointCaches replaces the point cache of every file of d by an empty
// one of the given size (0: disabled). Call it before concurrent use.
func setPointCaches(d *DB, slots int) {
	for _, f := range d.cur.Load().files {
		if slots == 0 {
			f.points = pointCache{}
		} else {
			f.points = newPointCache(slots)
		}
	}
}

// pointOffset returns the data offset of ip's record in f, or ok=false.
func pointOffset(f *file, ip netip.Addr) (uintptr, bool) {
	if f.ipv4Only && !ip.Unmap().Is4() {
		return 0, false
	}
	res := f.reader.Lookup(ip.Unmap())
	return res.Offset(), res.Found()
}

func TestPointPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pts := []Point{
		{},
		{OK: true},
		{Country: [2]byte{'D', 'E'}, Continent: [2]byte{'E', 'U'}, Lat: 50.1109, Lon: 8.6821, OK: true, HasCoords: true},
		{Country: [2]byte{'S', 'G'}, Lat: 1.35, Lon: 103.8, OK: true, HasCoords: true, Centroid: true},
		{Lat: float32(math.Copysign(0, -1)), Lon: -180, OK: true, HasCoords: true},
		{Country: [2]byte{0xff, 0xff}, Continent: [2]byte{0xff, 0xff}, Lat: -90, Lon: math.MaxFloat32, OK: true, HasCoords: true, Centroid: true},
	}
	for range 1000 {
		pts = append(pts, Point{
			Country:   [2]byte{byte(rng.Uint32()), byte(rng.Uint32())},
			Continent: [2]byte{byte(rng.Uint32()), byte(rng.Uint32())},
			Lat:       float32(rng.Float64()*180 - 90),
			Lon:       float32(rng.Float64()*360 - 180),
			OK:        rng.IntN(2) == 0,
			HasCoords: rng.IntN(2) == 0,
			Centroid:  rng.IntN(2) == 0,
		})
	}
	for _, p := range pts {
		got := unpackPoint(packPoint(p))
		if got != p || math.Signbit(float64(got.Lat)) != math.Signbit(float64(p.Lat)) {
			t.Fatalf("round trip of %+v = %+v", p, got)
		}
	}
}

func TestPointCacheSize(t *testing.T) {
	for _, tt := range []struct{ in, want int }{
		{-1, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 4}, {64, 64}, {65, 128},
		{maxPointCacheSlots - 1, maxPointCacheSlots}, {maxPointCacheSlots, maxPointCacheSlots}, {1 << 30, maxPointCacheSlots},
	} {
		c := newPointCache(tt.in)
		if len(c.slots) != tt.want || 1<<(64-int(c.shift)) != tt.want {
			t.Errorf("newPointCache(%d): %d slots, shift %d; want %d slots", tt.in, len(c.slots), c.shift, tt.want)
		}
	}
	if n := pointCacheSlots(0); n != minPointCacheSlots {
		t.Errorf("pointCacheSlots(0) = %d", n)
	}
	// The demo file gets a small table, a large file the full one.
	demo, _ := newTestDB(t, geotest.SchemaCity, geotest.DemoRecords())
	if n := len(demo.cur.Load().files[0].points.slots); n < minPointCacheSlots || n > 1024 {
		t.Errorf("demo file: %d slots", n)
	}
	big, _ := newTestDB(t, geotest.SchemaCity, distinctRecords(2_000, 1))
	if n := len(big.cur.Load().files[0].points.slots); n != maxPointCacheSlots {
		t.Errorf("file of 2k records: %d slots, want %d", n, maxPointCacheSlots)
	}
}

func TestPointCacheGetPut(t *testing.T) {
	de := Point{Country: [2]byte{'D', 'E'}, Continent: [2]byte{'E', 'U'}, Lat: 50, Lon: 8, OK: true, HasCoords: true}
	fr := Point{Country: [2]byte{'F', 'R'}, Continent: [2]byte{'E', 'U'}, Lat: 46, Lon: 2, OK: true, HasCoords: true}

	var off0 pointCache // disabled
	off0.put(5, de)
	if _, ok := off0.get(5); ok {
		t.Fatal("disabled cache hit")
	}

	c := newPointCache(256)
	for _, off := range []uintptr{0, 1, 7, 1 << 20} {
		if _, ok := c.get(off); ok {
			t.Fatalf("empty cache hit at %d", off)
		}
	}
	c.put(0, de) // offset 0 is a valid record offset
	if p, ok := c.get(0); !ok || p != de {
		t.Fatalf("get(0) = %+v, %v", p, ok)
	}
	// An unusable record (OK unset) is cached as such.
	c.put(9, Point{})
	if p, ok := c.get(9); !ok || p != (Point{}) {
		t.Fatalf("get(9) = %+v, %v", p, ok)
	}
	// Another offset in the same slot evicts the first and never aliases it.
	var other uintptr
	for other = 1; c.slot(other) != c.slot(0); other++ {
	}
	if _, ok := c.get(other); ok {
		t.Fatalf("get(%d) hit before put", other)
	}
	c.put(other, fr)
	if p, ok := c.get(other); !ok || p != fr {
		t.Fatalf("get(%d) = %+v, %v", other, p, ok)
	}
	if _, ok := c.get(0); ok {
		t.Fatal("evicted offset 0 still hits")
	}
	// A slot being written reads as a miss, and a second writer skips.
	s := c.slot(other)
	s.seq.Add(1)
	if _, ok := c.get(other); ok {
		t.Fatal("hit on a slot being written")
	}
	c.put(other, de)
	s.seq.Add(1)
	if p, ok := c.get(other); !ok || p != fr {
		t.Fatalf("after skipped put get = %+v, %v; want %+v", p, ok, fr)
	}
	// Offsets of equal-size records spread over the table like random
	// keys would (1,024 keys use 1 - 1/e of 1,024 slots: 647, sd ~9), for
	// any record size, rather than piling into a few slots.
	c = newPointCache(1024)
	for _, stride := range []int{1, 16, 32, 64, 96, 100, 128, 192, 256, 384, 1000} {
		used := map[*pointSlot]bool{}
		for i := range 1024 {
			used[c.slot(uintptr(4096+i*stride))] = true
		}
		if len(used) < 600 {
			t.Errorf("1024 offsets %d bytes apart use only %d of 1024 slots", stride, len(used))
		}
	}
}

// equivalenceAddrs returns addresses inside, at the edges of and outside
// the networks of recs, IPv4-mapped forms of the IPv4 ones, and random
// IPv4 and IPv6 addresses (mostly unknown).
func equivalenceAddrs(recs []geotest.Record, rng *rand.Rand) []netip.Addr {
	var out []netip.Addr
	for i, r := range recs {
		pfx := netip.MustParsePrefix(r.Network)
		a := pfx.Addr()
		out = append(out, a, a.Next())
		if i%5 == 0 {
			out = append(out, a.Prev())
		}
		if a.Is4() {
			out = append(out, netip.AddrFrom16(a.Next().As16()))
		}
	}
	for range 2000 {
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out = append(out, netip.AddrFrom16(b), netip.AddrFrom4([4]byte(b[:4])))
		// Random hosts inside the generated ranges (1.0.0.0/13, 2a00::/16).
		out = append(out, netip.AddrFrom4([4]byte{1, b[0] & 7, b[1], b[2]}))
		b[0], b[1] = 0x2a, 0x00
		out = append(out, netip.AddrFrom16(b))
		out = append(out, netip.AddrFrom16(netip.AddrFrom4([4]byte{1, b[2] & 7, b[3], b[4]}).As16()))
	}
	out = append(out, netip.Addr{}, netip.IPv4Unspecified(), netip.IPv6Unspecified(), netip.MustParseAddr("::ffff:8.8.8.8"))
	for _, s := range []string{geotest.DemoFrankfurt, geotest.DemoSingapore, geotest.DemoJapan6, "::ffff:" + geotest.DemoLondon} {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// checkEquivalent compares LookupPoint with and without the cache for
// every address, twice with the cache (a miss that fills it, then a hit),
// and checks that a found answer is then in the cache of the file that
// gave it. It returns how many addresses were found.
func checkEquivalent(t *testing.T, d *DB, addrs []netip.Addr) int {
	t.Helper()
	found := 0
	for _, ip := range addrs {
		var want, got Point
		wantOK := d.lookupPoint(ip, &want, false)
		for pass := range 2 {
			got = Point{OK: true, Lat: 99} // must be overwritten
			if ok := d.lookupPoint(ip, &got, true); ok != wantOK || got != want {
				t.Fatalf("%s pass %d: cached %+v, %v; uncached %+v, %v", ip, pass, got, ok, want, wantOK)
			}
		}
		if !wantOK {
			if want != (Point{}) {
				t.Fatalf("%s: not found but point %+v", ip, want)
			}
			continue
		}
		found++
		if len(d.cur.Load().files[0].points.slots) == 0 {
			continue // caching disabled
		}
		// The answering file is the first one whose cache holds a usable
		// point for the address (the lookup just filled it).
		answered := false
		for _, f := range d.cur.Load().files {
			off, ok := pointOffset(f, ip)
			if !ok {
				continue
			}
			p, hit := f.points.get(off)
			if !hit {
				t.Fatalf("%s: offset %d not cached in %s after a lookup", ip, off, f.path)
			}
			if p.OK {
				if p != want {
					t.Fatalf("%s: cache of %s holds %+v, want %+v", ip, f.path, p, want)
				}
				answered = true
				break
			}
		}
		if !answered {
			t.Fatalf("%s: no file cached the answer %+v", ip, want)
		}
	}
	return found
}

// TestPointCacheEquivalence: LookupPoint gives the same answer with and
// without the cache, for every schema, with the default table, a tiny one
// (constant evictions) and none.
func TestPointCacheEquivalence(t *testing.T) {
	recs := geotest.GenerateRecords(3000, 3)
	// Some records without coordinates (country centroid) and some with
	// neither country nor coordinates (not an answer).
	for i := range recs {
		switch i % 11 {
		case 4:
			recs[i].NoCoords = true
		case 7:
			recs[i].NoCoords, recs[i].Country = true, ""
		}
	}
	recs = append(recs, geotest.DemoRecords()...)
	addrs := equivalenceAddrs(recs, rand.New(rand.NewPCG(7, 8)))
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaCountry, geotest.SchemaFlat} {
		for _, slots := range []int{-1, 1, 8, 0} { // -1: as opened
			t.Run(s.String(), func(t *testing.T) {
				d, _ := newTestDB(t, s, recs)
				if slots >= 0 {
					setPointCaches(d, slots)
				}
				found := checkEquivalent(t, d, addrs)
				if found < len(recs) {
					t.Fatalf("only %d of %d addresses found", found, len(addrs))
				}
			})
		}
	}
}

// TestPointCacheFamilies covers the IPv4-only plus IPv6-only pair, in both
// orders, with a first file whose records are partly unusable so that the
// answer comes from the second file for the same network.
func TestPointCacheFamilies(t *testing.T) {
	dir := t.TempDir()
	recs := geotest.GenerateRecords(2000, 9)
	recs = append(recs, geotest.DemoRecords()...)
	var v4, v6, v4Blank, v6Blank []geotest.Record
	for i, r := range recs {
		blank := r
		if i%3 == 0 {
			blank.Country, blank.NoCoords = "", true
		}
		if netip.MustParsePrefix(r.Network).Addr().Is4() {
			v4, v4Blank = append(v4, r), append(v4Blank, blank)
		} else {
			v6, v6Blank = append(v6, r), append(v6Blank, blank)
		}
	}
	// v6Blank also holds (blanked) IPv4 networks, so an IPv6 file in front
	// of the IPv4 one answers some IPv4 lookups and passes on others.
	v6Blank = append(v6Blank, v4Blank...)
	p4 := filepath.Join(dir, "v4.mmdb")
	p4b := filepath.Join(dir, "v4-blank.mmdb")
	p6 := filepath.Join(dir, "v6.mmdb")
	p6b := filepath.Join(dir, "v6-blank.mmdb")
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaFlat} {
		geotest.MustBuild(t, p4, s, v4, geotest.Options{IPVersion: 4})
		geotest.MustBuild(t, p4b, s, v4Blank, geotest.Options{IPVersion: 4, RecordSize: 24})
		geotest.MustBuild(t, p6, s, v6, geotest.Options{IPVersion: 6})
		geotest.MustBuild(t, p6b, s, v6Blank, geotest.Options{IPVersion: 6, RecordSize: 32})
		addrs := equivalenceAddrs(recs, rand.New(rand.NewPCG(10, 11)))
		for _, order := range [][]string{{p4, p6}, {p6, p4}, {p4b, p6, p4}, {p6b, p4, p6}, {p6b, p4b, p6, p4}} {
			d, err := Open(order...)
			if err != nil {
				t.Fatal(err)
			}
			for _, slots := range []int{-1, 4} {
				if slots >= 0 {
					setPointCaches(d, slots)
				}
				if found := checkEquivalent(t, d, addrs); found < len(recs) {
					t.Errorf("%s %v: only %d addresses found", s, order, found)
				}
			}
			d.Close()
		}
	}
}

// TestPointCacheDecodeError: a record that fails to decode is not cached,
// and the lookup falls through to the next file every time.
func TestPointCacheDecodeError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "city.mmdb")
	geotest.WriteCity(t, path, geotest.DemoRecords())
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := parse(path, buf, true)
	if err != nil {
		t.Fatal(err)
	}
	good, err := parse(path, append([]byte(nil), buf...), true)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(geotest.DemoFrankfurt)
	off, ok := pointOffset(bad, ip)
	if !ok {
		t.Fatal("demo address not found")
	}
	// Turn the record's map into a two-byte string: decoding now fails.
	bad.data[off] = 0x42
	var rec fields
	if err := decodeRecord(bad.dec.CursorAt(uint(off)), bad.data, &rec, false); err == nil {
		t.Fatal("corrupted record decodes")
	}
	want, ok := good.lookupPoint(ip, false)
	if !ok || want.Country != [2]byte{'D', 'E'} {
		t.Fatalf("good file: %+v, %v", want, ok)
	}
	for _, files := range [][]*file{{bad}, {bad, good}} {
		d := &DB{closed: make(chan struct{})}
		d.cur.Store(&fileSet{files: files})
		for pass := range 3 {
			var p Point
			ok := d.LookupPoint(ip, &p)
			if len(files) == 1 && (ok || p != (Point{})) {
				t.Fatalf("pass %d: corrupt record answered %+v, %v", pass, p, ok)
			}
			if len(files) == 2 && (!ok || p != want) {
				t.Fatalf("pass %d: got %+v, %v; want %+v from the second file", pass, p, ok, want)
			}
			if p, hit := bad.points.get(off); hit {
				t.Fatalf("pass %d: failed decode cached as %+v", pass, p)
			}
		}
	}
}

// TestPointCacheConcurrent hammers a tiny table from several goroutines, so
// that readers race writers on the same slots: every answer must still be
// exactly the uncached one (a torn read would mix two records).
func TestPointCacheConcurrent(t *testing.T) {
	recs := distinctRecords(3000, 5)
	d, _ := newTestDB(t, geotest.SchemaCity, recs)
	setPointCaches(d, 4)
	addrs := make([]netip.Addr, 0, 512)
	want := make([]Point, 0, 512)
	for i := 0; i < len(recs); i += len(recs) / 512 {
		ip := netip.MustParsePrefix(recs[i].Network).Addr().Next()
		var p Point
		if !d.lookupPoint(ip, &p, false) {
			t.Fatalf("%s not found", ip)
		}
		addrs, want = append(addrs, ip), append(want, p)
	}
	iters := 20_000
	if testing.Short() {
		iters = 2_000
	}
	var wg sync.WaitGroup
	var bad atomic.Value
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var p Point
			for range iters {
				// Mostly a few hot addresses (hits), sometimes others.
				i := rng.IntN(8)
				if rng.IntN(4) == 0 {
					i = rng.IntN(len(addrs))
				}
				if !d.LookupPoint(addrs[i], &p) || p != want[i] {
					bad.Store(addrs[i].String())
					return
				}
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("wrong cached answer for %v", v)
	}
}

// TestPointCacheReload swaps between two versions of a file whose records
// sit at the same offsets but hold other coordinates, while readers look
// up: every answer is exactly one version's, and after each Reload the new
// file answers with its own values (no cache outlives its file).
func TestPointCacheReload(t *testing.T) {
	versions := [][]geotest.Record{distinctRecords(1500, 1), distinctRecords(1500, 1)}
	for i := range versions[1] {
		versions[1][i].Lat = -versions[1][i].Lat - 1
	}
	dir := t.TempDir()
	addrs := equivalenceAddrs(versions[0][:300], rand.New(rand.NewPCG(3, 4)))
	// The expected answers of each version, from a DB without cache.
	want := make([]map[netip.Addr]Point, 2)
	var offs [2][]uintptr
	for v, recs := range versions {
		p := filepath.Join(dir, "v.mmdb")
		geotest.MustBuild(t, p, geotest.SchemaCity, recs, geotest.Options{})
		d, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		setPointCaches(d, 0)
		want[v] = map[netip.Addr]Point{}
		for _, ip := range addrs {
			var pt Point
			d.LookupPoint(ip, &pt)
			want[v][ip] = pt
			if off, ok := pointOffset(d.cur.Load().files[0], ip); ok && len(offs[v]) < 100 {
				offs[v] = append(offs[v], off)
			}
		}
		d.Close()
	}
	if offs[0][99] != offs[1][99] || want[0][addrs[1]] == want[1][addrs[1]] {
		t.Fatal("versions do not share offsets with different values; the test would prove nothing")
	}

	path := filepath.Join(dir, "db.mmdb")
	geotest.MustBuild(t, path, geotest.SchemaCity, versions[0], geotest.Options{})
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		bad  atomic.Value
		n    atomic.Int64
	)
	for g := range 2 {
		wg.Go(func() {
			var p Point
			for i := g; !stop.Load(); i++ {
				ip := addrs[i%len(addrs)]
				d.LookupPoint(ip, &p)
				if p != want[0][ip] && p != want[1][ip] {
					bad.Store(ip.String())
					return
				}
				n.Add(1)
			}
		})
	}
	check := func(v int) {
		t.Helper()
		for _, ip := range addrs {
			var p Point
			d.LookupPoint(ip, &p)
			if p != want[v][ip] {
				t.Fatalf("version %d: %s = %+v, want %+v", v, ip, p, want[v][ip])
			}
		}
	}
	check(0)
	swaps := 12
	if testing.Short() {
		swaps = 4
	}
	for i := 1; i <= swaps; i++ {
		geotest.MustBuild(t, path, geotest.SchemaCity, versions[i%2], geotest.Options{})
		if err := d.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		check(i % 2)
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("answer for %v from neither version", v)
	}
	if n.Load() == 0 {
		t.Fatal("readers did no lookups")
	}
}
