// Package geotest builds small MaxMind DB files for tests and demos with
// github.com/maxmind/mmdbwriter, in the three record layouts that package geo
// reads: MaxMind GeoIP2/GeoLite2 City, MaxMind Country and the flat schema of
// the ip-location-db project. No test depends on a downloaded database.
//
// geotest does not import package geo, so geo's own tests may import it.
package geotest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// ErrInvalidRecord is returned by Build when a record cannot be written.
var ErrInvalidRecord = errors.New("geotest: invalid record")

// Schema names a record layout that Build writes.
type Schema int

const (
	// SchemaCity is the GeoIP2/GeoLite2 City layout: nested country,
	// continent, city and location maps.
	SchemaCity Schema = iota
	// SchemaCountry is the GeoIP2/GeoLite2 Country layout: country,
	// registered_country and continent maps, no location.
	SchemaCountry
	// SchemaFlat is the ip-location-db layout: top-level country_code,
	// state1, city, latitude, longitude and timezone.
	SchemaFlat
)

// String returns the schema name.
func (s Schema) String() string {
	switch s {
	case SchemaCity:
		return "city"
	case SchemaCountry:
		return "country"
	case SchemaFlat:
		return "flat"
	default:
		return fmt.Sprintf("schema(%d)", int(s))
	}
}

// Record is one network and its location, written in any Schema. Country
// and Continent are ISO codes ("DE", "EU"); NoCoords leaves latitude and
// longitude out of the record (to exercise the country-centroid fallback).
type Record struct {
	Network   string
	Country   string
	Continent string
	City      string
	TimeZone  string
	Lat, Lon  float64
	NoCoords  bool
}

// Options tunes Build. The zero value writes an IPv6 tree (which also holds
// IPv4 networks) with the default database type for the schema.
type Options struct {
	// IPVersion is 4 for an IPv4-only tree or 6 (default) for an IPv6 tree.
	IPVersion int
	// DatabaseType overrides the metadata database_type.
	DatabaseType string
	// RecordSize is 24, 28 or 32 (default 28).
	RecordSize int
}

// DefaultDatabaseType returns the metadata database_type Build writes for s.
func DefaultDatabaseType(s Schema) string {
	switch s {
	case SchemaCity:
		return "GeoLite2-City"
	case SchemaCountry:
		return "GeoLite2-Country"
	default:
		return "ip-location-db"
	}
}

// Build writes recs in schema s to path. It writes a temporary file in the
// same directory and renames it into place, so a concurrent reader sees
// either the old or the new file, never a partial one. Documentation and
// other reserved ranges are allowed, and IPv4 aliasing inside IPv6 trees is
// disabled (lookups of ::ffff:a.b.c.d must therefore be unmapped by the
// reader, which geo does).
func Build(path string, s Schema, recs []Record, opt Options) error {
	ipv := opt.IPVersion
	if ipv == 0 {
		ipv = 6
	}
	dbType := opt.DatabaseType
	if dbType == "" {
		dbType = DefaultDatabaseType(s)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "refrouter geotest " + s.String() + " database"},
		Languages:               []string{"en"},
		IPVersion:               ipv,
		RecordSize:              opt.RecordSize,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
	})
	if err != nil {
		return fmt.Errorf("new mmdb tree: %w", err)
	}
	for i, r := range recs {
		pfx, err := netip.ParsePrefix(r.Network)
		if err != nil {
			return fmt.Errorf("record %d network %q: %w: %w", i, r.Network, ErrInvalidRecord, err)
		}
		pfx = pfx.Masked()
		if ipv == 4 && !pfx.Addr().Is4() {
			return fmt.Errorf("record %d network %q in an IPv4 tree: %w", i, r.Network, ErrInvalidRecord)
		}
		ipnet := &net.IPNet{
			IP:   net.IP(pfx.Addr().AsSlice()),
			Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen()),
		}
		if err := tree.Insert(ipnet, encode(s, r)); err != nil {
			return fmt.Errorf("insert record %d network %q: %w", i, r.Network, err)
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".geotest-*.mmdb")
	if err != nil {
		return fmt.Errorf("create temp mmdb in %q: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write mmdb %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close mmdb %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename mmdb to %q: %w", path, err)
	}
	return nil
}

func names(s string) mmdbtype.Map {
	return mmdbtype.Map{"en": mmdbtype.String(s)}
}

func encode(s Schema, r Record) mmdbtype.Map {
	switch s {
	case SchemaFlat:
		m := mmdbtype.Map{
			"country_code": mmdbtype.String(r.Country),
			"state1":       mmdbtype.String(""),
			"city":         mmdbtype.String(r.City),
			"timezone":     mmdbtype.String(r.TimeZone),
		}
		if !r.NoCoords {
			m["latitude"] = mmdbtype.Float64(r.Lat)
			m["longitude"] = mmdbtype.Float64(r.Lon)
		}
		return m
	default:
		country := mmdbtype.Map{"iso_code": mmdbtype.String(r.Country), "names": names(r.Country)}
		m := mmdbtype.Map{
			"continent":          mmdbtype.Map{"code": mmdbtype.String(r.Continent), "names": names(r.Continent)},
			"country":            country,
			"registered_country": country,
		}
		if s == SchemaCity {
			loc := mmdbtype.Map{
				"accuracy_radius": mmdbtype.Uint16(50),
				"time_zone":       mmdbtype.String(r.TimeZone),
			}
			if !r.NoCoords {
				loc["latitude"] = mmdbtype.Float64(r.Lat)
				loc["longitude"] = mmdbtype.Float64(r.Lon)
			}
			m["location"] = loc
			if r.City != "" {
				m["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(1), "names": names(r.City)}
			}
		}
		return m
	}
}

// MustBuild is Build for tests: it fails tb on error.
func MustBuild(tb testing.TB, path string, s Schema, recs []Record, opt Options) {
	tb.Helper()
	if err := Build(path, s, recs, opt); err != nil {
		tb.Fatalf("geotest: build %s database %q: %v", s, path, err)
	}
}

// WriteCity writes recs as a GeoLite2-City database (IPv6 tree) to path.
func WriteCity(tb testing.TB, path string, recs []Record) {
	tb.Helper()
	MustBuild(tb, path, SchemaCity, recs, Options{})
}

// WriteCountry writes recs as a GeoLite2-Country database (IPv6 tree) to path.
func WriteCountry(tb testing.TB, path string, recs []Record) {
	tb.Helper()
	MustBuild(tb, path, SchemaCountry, recs, Options{})
}

// WriteFlat writes recs as an ip-location-db flat database (IPv6 tree) to path.
func WriteFlat(tb testing.TB, path string, recs []Record) {
	tb.Helper()
	MustBuild(tb, path, SchemaFlat, recs, Options{})
}

// Demo network addresses, one per DemoRecords entry, for tests and docs.
const (
	DemoHongKong   = "192.0.2.10"
	DemoAshburn    = "198.51.100.10"
	DemoFrankfurt  = "203.0.113.10"
	DemoShanghai   = "100.64.1.1"
	DemoLondon     = "100.65.1.1"
	DemoSaoPaulo   = "100.66.1.1"
	DemoSydney     = "100.67.1.1"
	DemoSingapore  = "100.68.1.1" // country only: no coordinates
	DemoTokyo      = "100.69.1.1"
	DemoFrankfurt6 = "2001:db8:1::1"
	DemoAshburn6   = "2001:db8:2::1"
	DemoHongKong6  = "2001:db8:3::1"
	DemoJapan6     = "2001:db8:4::1" // country only: no coordinates
)

// DemoRecords returns a fresh slice of demo networks in documentation and
// shared-address ranges: Hong Kong, Ashburn (Virginia), Frankfurt, Shanghai,
// London, São Paulo, Sydney, Singapore (no coordinates), Tokyo, and IPv6
// networks under 2001:db8::/32. The Demo* constants name one address in each.
func DemoRecords() []Record {
	return []Record{
		{Network: "192.0.2.0/24", Country: "HK", Continent: "AS", City: "Hong Kong", TimeZone: "Asia/Hong_Kong", Lat: 22.3193, Lon: 114.1694},
		{Network: "198.51.100.0/24", Country: "US", Continent: "NA", City: "Ashburn", TimeZone: "America/New_York", Lat: 39.0438, Lon: -77.4874},
		{Network: "203.0.113.0/24", Country: "DE", Continent: "EU", City: "Frankfurt am Main", TimeZone: "Europe/Berlin", Lat: 50.1109, Lon: 8.6821},
		{Network: "100.64.0.0/16", Country: "CN", Continent: "AS", City: "Shanghai", TimeZone: "Asia/Shanghai", Lat: 31.2304, Lon: 121.4737},
		{Network: "100.65.0.0/16", Country: "GB", Continent: "EU", City: "London", TimeZone: "Europe/London", Lat: 51.5074, Lon: -0.1278},
		{Network: "100.66.0.0/16", Country: "BR", Continent: "SA", City: "São Paulo", TimeZone: "America/Sao_Paulo", Lat: -23.5505, Lon: -46.6333},
		{Network: "100.67.0.0/16", Country: "AU", Continent: "OC", City: "Sydney", TimeZone: "Australia/Sydney", Lat: -33.8688, Lon: 151.2093},
		{Network: "100.68.0.0/16", Country: "SG", Continent: "AS", TimeZone: "Asia/Singapore", NoCoords: true},
		{Network: "100.69.0.0/16", Country: "JP", Continent: "AS", City: "Tokyo", TimeZone: "Asia/Tokyo", Lat: 35.6762, Lon: 139.6503},
		{Network: "2001:db8:1::/48", Country: "DE", Continent: "EU", City: "Frankfurt am Main", TimeZone: "Europe/Berlin", Lat: 50.1109, Lon: 8.6821},
		{Network: "2001:db8:2::/48", Country: "US", Continent: "NA", City: "Ashburn", TimeZone: "America/New_York", Lat: 39.0438, Lon: -77.4874},
		{Network: "2001:db8:3::/48", Country: "HK", Continent: "AS", City: "Hong Kong", TimeZone: "Asia/Hong_Kong", Lat: 22.3193, Lon: 114.1694},
		{Network: "2001:db8:4::/48", Country: "JP", Continent: "AS", TimeZone: "Asia/Tokyo", NoCoords: true},
	}
}

// BuildDemo writes the DemoRecords as a GeoLite2-City database to path, for
// `refrouter demo` when the user gives no database. It is not a test helper.
func BuildDemo(path string) error {
	return Build(path, SchemaCity, DemoRecords(), Options{})
}

// GenerateRecords returns n distinct networks for benchmarks: three IPv4 /24s
// (from 1.0.0.0 upward) for every IPv6 /48 (under 2a00::/16), with locations
// cycled from DemoRecords and jittered by a seeded generator into about
// 2,300 distinct records (many networks share a record, as in real
// databases). The result is deterministic for a given seed.
func GenerateRecords(n int, seed uint64) []Record {
	base := DemoRecords()[:9]
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]Record, 0, n)
	v4, v6 := 0, 0
	for i := range n {
		r := base[i%len(base)]
		r.NoCoords = false
		if r.Lat == 0 && r.Lon == 0 {
			r.NoCoords = true
		} else {
			r.Lat += float64(rng.IntN(256)) / 256
			r.Lon = r.Lon + 0.5
		}
		if i%4 == 3 {
			r.Network = fmt.Sprintf("2a00:%x:%x::/48", v6>>16, v6&0xffff)
			v6++
		} else {
			r.Network = fmt.Sprintf("%d.%d.%d.0/24", 1+v4>>16, (v4>>8)&0xff, v4&0xff)
			v4++
		}
		out = append(out, r)
	}
	return out
}
