package geo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/refrouter/refrouter/geo/geotest"
)

// newTestDB builds recs in schema s into a temp file and opens it.
func newTestDB(tb testing.TB, s geotest.Schema, recs []geotest.Record) (*DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "db.mmdb")
	geotest.MustBuild(tb, path, s, recs, geotest.Options{})
	d, err := Open(path)
	if err != nil {
		tb.Fatalf("open %s db: %v", s, err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, path
}

func mustAddr(tb testing.TB, s string) netip.Addr {
	tb.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-4 }

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLookupSchemas(t *testing.T) {
	sgInfo, _ := countryByCode([2]byte{'S', 'G'})
	jpInfo, _ := countryByCode([2]byte{'J', 'P'})
	deInfo, _ := countryByCode([2]byte{'D', 'E'})
	hkInfo, _ := countryByCode([2]byte{'H', 'K'})
	type want struct {
		country, continent, city, tz, source string
		lat, lon                             float64
	}
	centroid := func(cc, cont string, ci countryInfo) want {
		return want{country: cc, continent: cont, source: SourceCentroid, lat: ci.lat, lon: ci.lon}
	}
	tests := []struct {
		name   string
		schema geotest.Schema
		ip     string
		want   want
	}{
		{"city/frankfurt", geotest.SchemaCity, geotest.DemoFrankfurt, want{"DE", "EU", "Frankfurt am Main", "Europe/Berlin", SourceRecord, 50.1109, 8.6821}},
		{"city/ashburn", geotest.SchemaCity, geotest.DemoAshburn, want{"US", "NA", "Ashburn", "America/New_York", SourceRecord, 39.0438, -77.4874}},
		{"city/hongkong", geotest.SchemaCity, geotest.DemoHongKong, want{"HK", "AS", "Hong Kong", "Asia/Hong_Kong", SourceRecord, 22.3193, 114.1694}},
		{"city/saopaulo", geotest.SchemaCity, geotest.DemoSaoPaulo, want{"BR", "SA", "São Paulo", "America/Sao_Paulo", SourceRecord, -23.5505, -46.6333}},
		{"city/sydney", geotest.SchemaCity, geotest.DemoSydney, want{"AU", "OC", "Sydney", "Australia/Sydney", SourceRecord, -33.8688, 151.2093}},
		{"city/singapore-centroid", geotest.SchemaCity, geotest.DemoSingapore, want{"SG", "AS", "", "Asia/Singapore", SourceCentroid, sgInfo.lat, sgInfo.lon}},
		{"city/v6-frankfurt", geotest.SchemaCity, geotest.DemoFrankfurt6, want{"DE", "EU", "Frankfurt am Main", "Europe/Berlin", SourceRecord, 50.1109, 8.6821}},
		{"city/v6-japan-centroid", geotest.SchemaCity, geotest.DemoJapan6, want{"JP", "AS", "", "Asia/Tokyo", SourceCentroid, jpInfo.lat, jpInfo.lon}},
		{"city/mapped", geotest.SchemaCity, "::ffff:" + geotest.DemoLondon, want{"GB", "EU", "London", "Europe/London", SourceRecord, 51.5074, -0.1278}},
		{"country/frankfurt", geotest.SchemaCountry, geotest.DemoFrankfurt, centroid("DE", "EU", deInfo)},
		{"country/v6-hongkong", geotest.SchemaCountry, geotest.DemoHongKong6, centroid("HK", "AS", hkInfo)},
		{"country/mapped", geotest.SchemaCountry, "::ffff:" + geotest.DemoHongKong, centroid("HK", "AS", hkInfo)},
		{"flat/frankfurt", geotest.SchemaFlat, geotest.DemoFrankfurt, want{"DE", "EU", "Frankfurt am Main", "Europe/Berlin", SourceRecord, 50.1109, 8.6821}},
		{"flat/tokyo", geotest.SchemaFlat, geotest.DemoTokyo, want{"JP", "AS", "Tokyo", "Asia/Tokyo", SourceRecord, 35.6762, 139.6503}},
		{"flat/v6-ashburn", geotest.SchemaFlat, geotest.DemoAshburn6, want{"US", "NA", "Ashburn", "America/New_York", SourceRecord, 39.0438, -77.4874}},
		{"flat/singapore-centroid", geotest.SchemaFlat, geotest.DemoSingapore, want{"SG", "AS", "", "Asia/Singapore", SourceCentroid, sgInfo.lat, sgInfo.lon}},
		{"flat/mapped", geotest.SchemaFlat, "::ffff:" + geotest.DemoSydney, want{"AU", "OC", "Sydney", "Australia/Sydney", SourceRecord, -33.8688, 151.2093}},
	}
	dbs := map[geotest.Schema]*DB{}
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaCountry, geotest.SchemaFlat} {
		dbs[s], _ = newTestDB(t, s, geotest.DemoRecords())
	}
	wantSchema := map[geotest.Schema]Schema{geotest.SchemaCity: SchemaCity, geotest.SchemaCountry: SchemaCountry, geotest.SchemaFlat: SchemaFlat}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dbs[tt.schema]
			if got := d.Files()[0].Schema; got != wantSchema[tt.schema] {
				t.Fatalf("schema = %v, want %v", got, wantSchema[tt.schema])
			}
			ip := mustAddr(t, tt.ip)
			loc, err := d.Lookup(ip)
			if err != nil {
				t.Fatalf("Lookup(%s): %v", ip, err)
			}
			w := tt.want
			if loc.Country != w.country || loc.Continent != w.continent || loc.City != w.city ||
				loc.TimeZone != w.tz || loc.Source != w.source || !loc.HasCoords ||
				!near(loc.Lat, w.lat) || !near(loc.Lon, w.lon) {
				t.Errorf("Lookup(%s) = %+v, want %+v", ip, loc, w)
			}
			if loc.Schema != wantSchema[tt.schema].String() || loc.Network == "" {
				t.Errorf("Lookup(%s) schema/network = %q/%q", ip, loc.Schema, loc.Network)
			}
			// LookupPoint must agree with Lookup.
			var p Point
			if !d.LookupPoint(ip, &p) {
				t.Fatalf("LookupPoint(%s) = false", ip)
			}
			if p.CountryString() != loc.Country || p.ContinentString() != loc.Continent ||
				!p.HasCoords || p.Centroid != (loc.Source == SourceCentroid) ||
				math.Abs(float64(p.Lat)-loc.Lat) > 1e-3 || math.Abs(float64(p.Lon)-loc.Lon) > 1e-3 {
				t.Errorf("LookupPoint(%s) = %+v, disagrees with Lookup %+v", ip, p, loc)
			}
		})
	}
}

func TestNotFoundAndInvalid(t *testing.T) {
	d, _ := newTestDB(t, geotest.SchemaCity, geotest.DemoRecords())
	for _, s := range []string{"8.8.8.8", "2001:db9::1", "::ffff:8.8.4.4", "10.0.0.1"} {
		ip := mustAddr(t, s)
		if _, err := d.Lookup(ip); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%s) err = %v, want ErrNotFound", s, err)
		}
		p := Point{OK: true, Lat: 1}
		if d.LookupPoint(ip, &p) || p != (Point{}) {
			t.Errorf("LookupPoint(%s) = true or non-zero point %+v", s, p)
		}
	}
	if _, err := d.Lookup(netip.Addr{}); !errors.Is(err, ErrInvalidAddr) {
		t.Errorf("Lookup(zero) err = %v, want ErrInvalidAddr", err)
	}
	var p Point
	if d.LookupPoint(netip.Addr{}, &p) {
		t.Error("LookupPoint(zero) = true")
	}
}

// TestFamilies covers a DB of an IPv4-only file and an IPv6-only file, in
// both orders, and IPv4-mapped addresses.
func TestFamilies(t *testing.T) {
	dir := t.TempDir()
	var v4, v6 []geotest.Record
	for _, r := range geotest.DemoRecords() {
		if netip.MustParsePrefix(r.Network).Addr().Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	p4, p6 := filepath.Join(dir, "v4.mmdb"), filepath.Join(dir, "v6.mmdb")
	geotest.MustBuild(t, p4, geotest.SchemaFlat, v4, geotest.Options{IPVersion: 4})
	geotest.MustBuild(t, p6, geotest.SchemaFlat, v6, geotest.Options{IPVersion: 6})
	tests := []struct {
		ip, country string
	}{
		{geotest.DemoFrankfurt, "DE"},
		{"::ffff:" + geotest.DemoFrankfurt, "DE"},
		{geotest.DemoAshburn6, "US"},
		{geotest.DemoHongKong6, "HK"},
		{"::ffff:" + geotest.DemoShanghai, "CN"},
		{"8.8.8.8", ""},
		{"2001:db8:ff::1", ""},
	}
	for _, order := range [][]string{{p4, p6}, {p6, p4}} {
		d, err := Open(order...)
		if err != nil {
			t.Fatal(err)
		}
		if fi := d.Files(); len(fi) != 2 || fi[0].Path != order[0] {
			t.Fatalf("Files() = %+v", fi)
		}
		for _, tt := range tests {
			ip := mustAddr(t, tt.ip)
			loc, err := d.Lookup(ip)
			if tt.country == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("order %v: Lookup(%s) err = %v, want ErrNotFound", order, ip, err)
				}
				continue
			}
			if err != nil || loc.Country != tt.country {
				t.Errorf("order %v: Lookup(%s) = %q, %v; want %q", order, ip, loc.Country, err, tt.country)
			}
			var p Point
			if !d.LookupPoint(ip, &p) || p.CountryString() != tt.country {
				t.Errorf("order %v: LookupPoint(%s) = %+v", order, ip, p)
			}
		}
		d.Close()
	}
}

// TestFlatCoordKinds writes flat records whose coordinates use every
// encoding the decoder accepts, and some it must ignore.
func TestFlatCoordKinds(t *testing.T) {
	deInfo, _ := countryByCode([2]byte{'D', 'E'})
	tests := []struct {
		name       string
		lat, lon   mmdbtype.DataType
		wantLat    float64
		wantLon    float64
		wantSource string
	}{
		{"float64", mmdbtype.Float64(48.1), mmdbtype.Float64(11.5), 48.1, 11.5, SourceRecord},
		{"float32", mmdbtype.Float32(48.25), mmdbtype.Float32(11.5), 48.25, 11.5, SourceRecord},
		{"string", mmdbtype.String("48.1"), mmdbtype.String("-11.5"), 48.1, -11.5, SourceRecord},
		{"int", mmdbtype.Int32(-48), mmdbtype.Uint16(11), -48, 11, SourceRecord},
		{"bad-string", mmdbtype.String("north"), mmdbtype.String("11.5"), deInfo.lat, deInfo.lon, SourceCentroid},
		{"out-of-range", mmdbtype.Float64(91), mmdbtype.Float64(11.5), deInfo.lat, deInfo.lon, SourceCentroid},
		{"wrong-kind", mmdbtype.Map{}, mmdbtype.Bool(true), deInfo.lat, deInfo.lon, SourceCentroid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "flat.mmdb")
			writeRaw(t, path, "ip-location-db", map[string]mmdbtype.Map{
				"1.2.3.0/24": {"country_code": mmdbtype.String("de"), "latitude": tt.lat, "longitude": tt.lon},
			})
			d, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			loc, err := d.Lookup(mustAddr(t, "1.2.3.4"))
			if err != nil {
				t.Fatal(err)
			}
			if loc.Country != "DE" || loc.Continent != "EU" || loc.Source != tt.wantSource ||
				!near(loc.Lat, tt.wantLat) || !near(loc.Lon, tt.wantLon) {
				t.Errorf("got %+v, want %v,%v from %s", loc, tt.wantLat, tt.wantLon, tt.wantSource)
			}
		})
	}
}

// writeRaw writes arbitrary records with mmdbwriter.
func writeRaw(tb testing.TB, path, dbType string, recs map[string]mmdbtype.Map) {
	tb.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, IncludeReservedNetworks: true, DisableIPv4Aliasing: true})
	if err != nil {
		tb.Fatal(err)
	}
	for cidr, m := range recs {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			tb.Fatal(err)
		}
		if err := tree.Insert(n, m); err != nil {
			tb.Fatal(err)
		}
	}
	fh, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tree.WriteTo(fh); err != nil {
		tb.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		tb.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	geotest.WriteCity(t, good, geotest.DemoRecords())
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	asn := filepath.Join(dir, "asn.mmdb")
	writeRaw(t, asn, "GeoLite2-ASN", map[string]mmdbtype.Map{
		"1.2.3.0/24": {"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("x")},
	})
	emptyASN := filepath.Join(dir, "empty-asn.mmdb")
	writeRaw(t, emptyASN, "GeoLite2-ASN", nil)
	emptyCity := filepath.Join(dir, "empty-city.mmdb")
	writeRaw(t, emptyCity, "GeoIP2-City", nil)
	// Flip bytes at the end of the data section (just before the
	// metadata marker), and at the start of the search tree.
	flipped := append([]byte(nil), goodBytes...)
	marker := bytes.LastIndex(flipped, metadataStartMarker)
	for i := marker - 120; i < marker-20; i++ {
		flipped[i] ^= 0xff
	}
	badTree := append([]byte(nil), goodBytes...)
	for i := range 64 {
		badTree[i] ^= 0xff
	}
	tests := []struct {
		name    string
		paths   []string
		wantErr error
	}{
		{"no paths", nil, ErrNoFiles},
		{"missing", []string{filepath.Join(dir, "nope.mmdb")}, fs.ErrNotExist},
		{"missing second", []string{good, filepath.Join(dir, "nope.mmdb")}, fs.ErrNotExist},
		{"empty file", []string{write("empty.mmdb", nil)}, ErrCorrupt},
		{"random bytes", []string{write("random.mmdb", random)}, ErrCorrupt},
		{"truncated half", []string{write("half.mmdb", goodBytes[:len(goodBytes)/2])}, ErrCorrupt},
		{"truncated tail", []string{write("tail.mmdb", goodBytes[:len(goodBytes)-20])}, ErrCorrupt},
		{"flipped data", []string{write("flipped.mmdb", flipped)}, ErrCorrupt},
		{"bad tree", []string{write("badtree.mmdb", badTree)}, ErrCorrupt},
		{"directory", []string{dir}, ErrCorrupt},
		{"asn schema", []string{asn}, ErrUnknownSchema},
		{"empty asn", []string{emptyASN}, ErrUnknownSchema},
		{"empty city ok", []string{emptyCity}, nil},
		{"good", []string{good}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.paths...)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				d.Close()
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open err = %v, want %v", err, tt.wantErr)
			}
			if d != nil {
				t.Fatal("Open returned a DB with an error")
			}
			t.Logf("error: %v", err)
			if len(tt.paths) > 0 && !containsStr(err.Error(), filepath.Base(tt.paths[len(tt.paths)-1])) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestCountryTable(t *testing.T) {
	continents := map[string]bool{"AF": true, "AN": true, "AS": true, "EU": true, "NA": true, "OC": true, "SA": true}
	for i, c := range countryTable {
		if i > 0 {
			p := countryTable[i-1].code
			if string(p[:]) >= string(c.code[:]) {
				t.Errorf("table not sorted/unique at %d: %s after %s", i, c.code[:], p[:])
			}
		}
		if !isUpper(c.code[0]) || !isUpper(c.code[1]) || !continents[string(c.continent[:])] ||
			math.Abs(c.lat) > 90 || math.Abs(c.lon) > 180 {
			t.Errorf("bad row %+v", c)
		}
	}
	// The most populous countries plus the territories named in the brief.
	required := []string{"CN", "IN", "US", "ID", "PK", "NG", "BR", "BD", "RU", "ET", "MX", "JP", "EG", "PH",
		"CD", "VN", "IR", "TR", "DE", "TH", "GB", "TZ", "FR", "ZA", "IT", "KE", "MM", "CO", "KR", "SD", "UG",
		"ES", "DZ", "IQ", "AR", "AF", "YE", "CA", "PL", "MA", "AO", "UA", "UZ", "MY", "MZ", "GH", "PE", "SA",
		"MG", "CI", "NP", "CM", "VE", "NE", "AU", "KP", "SY", "ML", "BF", "LK", "TW", "MW", "ZM", "CL", "KZ",
		"RO", "EC", "SO", "SN", "GT", "NL", "TD", "KH", "ZW", "HK", "SG", "MO", "AE"}
	for _, cc := range required {
		if _, _, _, ok := Country(cc); !ok {
			t.Errorf("country %s missing from table", cc)
		}
	}
	// Spot checks: centroid within a few degrees of a known point inside.
	checks := []struct {
		cc       string
		cont     string
		lat, lon float64
	}{
		{"DE", "EU", 51, 10}, {"US", "NA", 38, -97}, {"BR", "SA", -10, -52}, {"AU", "OC", -25, 134},
		{"JP", "AS", 36, 138}, {"ZA", "AF", -30, 24}, {"SG", "AS", 1.35, 103.8}, {"HK", "AS", 22.3, 114.2},
	}
	for _, c := range checks {
		cont, lat, lon, ok := Country(c.cc)
		if !ok || cont != c.cont || math.Abs(lat-c.lat) > 5 || math.Abs(lon-c.lon) > 5 {
			t.Errorf("Country(%s) = %s %v %v %v", c.cc, cont, lat, lon, ok)
		}
	}
	for _, cc := range []string{"", "D", "DEU", "ZZ", "de", "\x00\x00"} {
		if _, _, _, ok := Country(cc); ok {
			t.Errorf("Country(%q) ok", cc)
		}
	}
}

func TestClose(t *testing.T) {
	d, _ := newTestDB(t, geotest.SchemaCity, geotest.DemoRecords())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Lookup(mustAddr(t, geotest.DemoFrankfurt)); !errors.Is(err, ErrClosed) {
		t.Errorf("Lookup after Close err = %v", err)
	}
	var p Point
	if d.LookupPoint(mustAddr(t, geotest.DemoFrankfurt), &p) {
		t.Error("LookupPoint after Close = true")
	}
	if err := d.Reload(); !errors.Is(err, ErrClosed) {
		t.Errorf("Reload after Close err = %v", err)
	}
	if d.Files() != nil {
		t.Error("Files after Close not nil")
	}
}

// versionRecords returns the demo networks all placed in one country, so a
// lookup tells which version of the file answered.
func versionRecords(cc string, lat float64) []geotest.Record {
	recs := geotest.DemoRecords()
	for i := range recs {
		recs[i].Country, recs[i].Continent, recs[i].Lat, recs[i].Lon, recs[i].NoCoords = cc, "EU", lat, lat, false
	}
	return recs
}

// TestReloadConcurrent swaps the file many times while readers look up
// addresses: every answer must be exactly the old or the new version.
func TestReloadConcurrent(t *testing.T) {
	versions := [][]geotest.Record{versionRecords("DE", 10), versionRecords("FR", 20)}
	d, path := newTestDB(t, geotest.SchemaCity, versions[0])
	addrs := []netip.Addr{mustAddr(t, geotest.DemoFrankfurt), mustAddr(t, geotest.DemoHongKong6), mustAddr(t, "::ffff:"+geotest.DemoLondon)}

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		lookups atomic.Int64
		bad     atomic.Value
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p Point
			for i := 0; !stop.Load(); i++ {
				ip := addrs[(i+g)%len(addrs)]
				if !d.LookupPoint(ip, &p) {
					bad.Store("lookup failed for " + ip.String())
					return
				}
				ok := (p.Country == [2]byte{'D', 'E'} && p.Lat == 10 && p.Lon == 10) ||
					(p.Country == [2]byte{'F', 'R'} && p.Lat == 20 && p.Lon == 20)
				if !ok || p.Continent != [2]byte{'E', 'U'} {
					bad.Store("garbage point " + ip.String())
					return
				}
				lookups.Add(1)
			}
		}()
	}
	const swaps = 30
	for i := 1; i <= swaps; i++ {
		geotest.MustBuild(t, path, geotest.SchemaCity, versions[i%2], geotest.Options{})
		if err := d.Reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if i == swaps/2 {
			// A corrupt file fails the reload and keeps the old data.
			if err := os.WriteFile(path, []byte("not a database"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := d.Reload(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reload of corrupt file err = %v", err)
			}
		}
	}
	waitFor(t, 10*time.Second, "lookups", func() bool { return lookups.Load() > 1000 || bad.Load() != nil })
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	// The last successful reload was version swaps%2.
	var p Point
	if !d.LookupPoint(addrs[0], &p) || p.CountryString() != versions[swaps%2][0].Country {
		t.Errorf("after reloads got %+v", p)
	}
}

func TestWatch(t *testing.T) {
	d, path := newTestDB(t, geotest.SchemaCity, versionRecords("DE", 10))
	ip := mustAddr(t, geotest.DemoFrankfurt)
	country := func() string {
		var p Point
		d.LookupPoint(ip, &p)
		return p.CountryString()
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Watch(ctx, 5*time.Millisecond, func(err error) { errs <- err })
	}()

	// Make sure the mtime differs even on coarse-grained filesystems.
	bump := func() {
		future := time.Now().Add(time.Duration(time.Now().UnixNano()%1000+1) * time.Second)
		if err := os.Chtimes(path, future, future); err != nil {
			t.Fatal(err)
		}
	}
	geotest.MustBuild(t, path, geotest.SchemaCity, versionRecords("FR", 20), geotest.Options{})
	bump()
	waitFor(t, 10*time.Second, "watch to load FR", func() bool { return country() == "FR" })

	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	bump()
	select {
	case err := <-errs:
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("onErr got %v, want ErrCorrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onErr not called for a corrupt file")
	}
	if got := country(); got != "FR" {
		t.Errorf("after a failed reload country = %q, want FR kept", got)
	}

	geotest.MustBuild(t, path, geotest.SchemaCity, versionRecords("ES", 30), geotest.Options{})
	bump()
	waitFor(t, 10*time.Second, "watch to load ES", func() bool { return country() == "ES" })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	if len(errs) != 0 {
		t.Errorf("unexpected extra errors: %v", <-errs)
	}

	// Close also stops Watch.
	done2 := make(chan struct{})
	go func() {
		defer close(done2)
		d.Watch(context.Background(), time.Hour, nil)
	}()
	d.Close()
	select {
	case <-done2:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after Close")
	}
}

func TestLookupJSON(t *testing.T) {
	d, _ := newTestDB(t, geotest.SchemaCity, geotest.DemoRecords())
	b, err := LookupJSON(d, " "+geotest.DemoFrankfurt+" ")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	for k, v := range map[string]any{"ip": geotest.DemoFrankfurt, "country": "DE", "continent": "EU", "city": "Frankfurt am Main",
		"timezone": "Europe/Berlin", "source": SourceRecord, "lat": 50.1109, "lon": 8.6821, "network": "203.0.113.0/24"} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (json %s)", k, got[k], v, b)
		}
	}
	if _, err := LookupJSON(d, "not-an-ip"); !errors.Is(err, ErrInvalidAddr) {
		t.Errorf("bad ip err = %v", err)
	}
	if _, err := LookupJSON(d, "8.8.8.8"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ip err = %v", err)
	}
}

func TestBuildDemo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.mmdb")
	if err := geotest.BuildDemo(path); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, r := range geotest.DemoRecords() {
		ip := netip.MustParsePrefix(r.Network).Addr().Next()
		var p Point
		if !d.LookupPoint(ip, &p) || p.CountryString() != r.Country || !p.HasCoords || p.Centroid != r.NoCoords {
			t.Errorf("%s: got %+v, want %s", ip, p, r.Country)
		}
	}
}

// TestAgreement checks, on a generated database in every schema, that
// Lookup and LookupPoint agree with each other and with the records
// written, for addresses inside the networks and random ones.
func TestAgreement(t *testing.T) {
	recs := geotest.GenerateRecords(3000, 3)
	rng := rand.New(rand.NewPCG(4, 5))
	for _, s := range []geotest.Schema{geotest.SchemaCity, geotest.SchemaCountry, geotest.SchemaFlat} {
		t.Run(s.String(), func(t *testing.T) {
			d, _ := newTestDB(t, s, recs)
			check := func(ip netip.Addr, want *geotest.Record) {
				loc, err := d.Lookup(ip)
				var p Point
				ok := d.LookupPoint(ip, &p)
				if (err == nil) != ok {
					t.Fatalf("%s: Lookup err %v but LookupPoint %v", ip, err, ok)
				}
				if err != nil {
					if want != nil || !errors.Is(err, ErrNotFound) {
						t.Fatalf("%s: err %v, want %+v", ip, err, want)
					}
					return
				}
				if p.CountryString() != loc.Country || p.ContinentString() != loc.Continent ||
					p.HasCoords != loc.HasCoords || math.Abs(float64(p.Lat)-loc.Lat) > 1e-3 || math.Abs(float64(p.Lon)-loc.Lon) > 1e-3 {
					t.Fatalf("%s: point %+v disagrees with %+v", ip, p, loc)
				}
				checkReference(t, d, ip, loc)
				if want != nil {
					if loc.Country != want.Country || loc.Continent != want.Continent {
						t.Fatalf("%s: got %+v, want %+v", ip, loc, want)
					}
					if s != geotest.SchemaCountry && !want.NoCoords && (!near(loc.Lat, want.Lat) || !near(loc.Lon, want.Lon)) {
						t.Fatalf("%s: coords %v,%v want %v,%v", ip, loc.Lat, loc.Lon, want.Lat, want.Lon)
					}
				}
			}
			for i := 0; i < len(recs); i += 7 {
				pfx := netip.MustParsePrefix(recs[i].Network)
				check(pfx.Addr(), &recs[i])
				if pfx.Addr().Is4() {
					check(netip.AddrFrom16(pfx.Addr().As16()), &recs[i]) // mapped
				}
			}
			for range 500 {
				var b [16]byte
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
				check(netip.AddrFrom16(b), nil) // random v6: may or may not hit
				check(netip.AddrFrom4([4]byte(b[:4])), nil)
			}
		})
	}
}

// refRecord is decoded by maxminddb's reflection decoder, the reference
// implementation the cursor walker must agree with. It covers both layouts
// except "city", whose type differs between them.
type refRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
		TimeZone  string   `maxminddb:"time_zone"`
	} `maxminddb:"location"`
	CountryCode string   `maxminddb:"country_code"`
	Latitude    *float64 `maxminddb:"latitude"`
	Longitude   *float64 `maxminddb:"longitude"`
	Timezone    string   `maxminddb:"timezone"`
}

func checkReference(t *testing.T, d *DB, ip netip.Addr, loc Location) {
	t.Helper()
	f := d.cur.Load().files[0]
	res := f.reader.Lookup(ip.Unmap())
	var ref refRecord
	if err := res.Decode(&ref); err != nil || !res.Found() {
		t.Fatalf("%s: reference decode found=%v err=%v", ip, res.Found(), err)
	}
	var city string
	if f.schema == SchemaFlat {
		if err := res.DecodePath(&city, "city"); err != nil {
			t.Fatal(err)
		}
	} else if err := res.DecodePath(&city, "city", "names", "en"); err != nil {
		t.Fatal(err)
	}
	country, lat, lon, tz := ref.Country.ISOCode+ref.CountryCode, ref.Location.Latitude, ref.Location.Longitude, ref.Location.TimeZone+ref.Timezone
	if f.schema == SchemaFlat {
		lat, lon = ref.Latitude, ref.Longitude
	}
	if loc.Country != country || loc.City != city || loc.TimeZone != tz ||
		(ref.Continent.Code != "" && loc.Continent != ref.Continent.Code) {
		t.Fatalf("%s: %+v disagrees with reference %+v city %q", ip, loc, ref, city)
	}
	if (lat != nil && lon != nil) != (loc.Source == SourceRecord) ||
		(lat != nil && lon != nil && (*lat != loc.Lat || *lon != loc.Lon)) {
		t.Fatalf("%s: coords %+v disagree with reference %v %v", ip, loc, lat, lon)
	}
}
