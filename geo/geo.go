// Package geo maps IP addresses to locations using MaxMind DB files: MaxMind
// GeoIP2/GeoLite2 City and Country databases and the flat-schema databases
// of the ip-location-db project (top-level country_code, latitude,
// longitude, city, timezone).
//
// A DB holds one or more files (for example one IPv4-only and one
// IPv6-only file) read fully into memory, so a Reload can swap them
// atomically while in-flight lookups keep using the old ones. The hot path,
// LookupPoint, walks the record with the maxminddb-golang/v2 cursor API and
// reads only the country, continent and coordinates: it allocates nothing,
// and it caches what it read per record of each file (see LookupPoint).
// Lookup also returns the city name and time zone and allocates.
//
// When a record has a country but no coordinates, the centroid of the
// country from a built-in table (see Country) is used instead.
package geo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound is returned by Lookup when no file has the address.
	ErrNotFound = errors.New("geo: not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("geo: database closed")
	// ErrCorrupt wraps errors for files that are not valid MaxMind DB
	// files or whose records cannot be decoded.
	ErrCorrupt = errors.New("geo: corrupt database")
	// ErrUnknownSchema is returned for valid MaxMind DB files whose records
	// are neither MaxMind City/Country nor ip-location-db flat records
	// (an ASN database, for example).
	ErrUnknownSchema = errors.New("geo: unknown database schema")
	// ErrNoFiles is returned by Open without paths.
	ErrNoFiles = errors.New("geo: no database files")
	// ErrInvalidAddr is returned for an invalid or unparsable IP address.
	ErrInvalidAddr = errors.New("geo: invalid IP address")
)

// Source values of Location.Source: where the coordinates came from.
const (
	// SourceRecord: the database record had coordinates.
	SourceRecord = "record"
	// SourceCentroid: the record had a country but no coordinates, and the
	// country's centroid from the built-in table was used.
	SourceCentroid = "centroid"
	// SourceNone: no coordinates are known (HasCoords is false).
	SourceNone = "none"
)

// Location is the full answer of Lookup. It is a plain value.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code ("DE"), or "" if unknown.
	Country string `json:"country"`
	// Continent is the continent code ("EU"), from the record or derived
	// from Country.
	Continent string `json:"continent"`
	// Lat and Lon are in degrees; meaningful only when HasCoords is set.
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	HasCoords bool    `json:"has_coords"`
	// City is the English city name, if the database has one.
	City string `json:"city,omitempty"`
	// TimeZone is the IANA time zone, if the database has one.
	TimeZone string `json:"timezone,omitempty"`
	// Source is SourceRecord, SourceCentroid or SourceNone.
	Source string `json:"source"`
	// Network is the database network that matched the address.
	Network string `json:"network,omitempty"`
	// Schema names the layout of the file that answered (Schema.String).
	Schema string `json:"schema"`
}

// Point is the hot-path answer of LookupPoint: fixed-size, no strings.
type Point struct {
	Country   [2]byte // ISO 3166-1 alpha-2, zero if unknown
	Continent [2]byte // continent code, zero if unknown
	Lat, Lon  float32 // degrees; meaningful only when HasCoords is set
	OK        bool    // a record was found
	HasCoords bool    // Lat and Lon are set
	Centroid  bool    // Lat and Lon are the country's centroid
}

// CountryString returns the country code as a string, "" if unknown. It
// allocates; hot paths should compare Country directly.
func (p *Point) CountryString() string {
	return codeString(p.Country)
}

// ContinentString returns the continent code as a string, "" if unknown.
func (p *Point) ContinentString() string {
	return codeString(p.Continent)
}

// DB answers lookups from one or more MaxMind DB files. All methods are
// safe for concurrent use. Lookups never block on Reload: the files are
// swapped with an atomic pointer, and files being replaced stay valid
// until the lookups using them return (they are plain memory, reclaimed by
// the garbage collector).
type DB struct {
	paths []string

	mu     sync.Mutex // serialises Reload and Close
	cur    atomic.Pointer[fileSet]
	closed chan struct{}
	once   sync.Once
}

// fileSet is one immutable generation of loaded files, in Open order.
type fileSet struct {
	files []*file
}

// Open reads the files at paths fully into memory (a Reload briefly holds
// two copies) and checks each one by walking its search tree and decoding
// every distinct record once (8 ms for a generated file of 100k networks;
// it grows linearly with the network count). Errors name the file and wrap
// fs.ErrNotExist for a missing file, ErrCorrupt for a file that
// is not a valid MaxMind DB, and ErrUnknownSchema for a valid one with
// records geo does not understand. Lookups try the files in the given
// order and return the first record found.
func Open(paths ...string) (*DB, error) {
	if len(paths) == 0 {
		return nil, ErrNoFiles
	}
	fs, err := loadAll(paths)
	if err != nil {
		return nil, err
	}
	d := &DB{paths: append([]string(nil), paths...), closed: make(chan struct{})}
	d.cur.Store(fs)
	return d, nil
}

func loadAll(paths []string) (*fileSet, error) {
	fs := &fileSet{files: make([]*file, 0, len(paths))}
	for _, p := range paths {
		f, err := loadFile(p)
		if err != nil {
			return nil, err
		}
		fs.files = append(fs.files, f)
	}
	return fs, nil
}

// Paths returns the files of d, in lookup order.
func (d *DB) Paths() []string {
	return append([]string(nil), d.paths...)
}

// Info describes one loaded file.
type Info struct {
	Path         string
	Schema       Schema
	DatabaseType string
	IPVersion    int
	BuildTime    time.Time
	Size         int64
}

// Files describes the currently loaded files, in lookup order. It returns
// nil after Close.
func (d *DB) Files() []Info {
	fs := d.cur.Load()
	if fs == nil {
		return nil
	}
	out := make([]Info, len(fs.files))
	for i, f := range fs.files {
		out[i] = Info{
			Path:         f.path,
			Schema:       f.schema,
			DatabaseType: f.reader.Metadata.DatabaseType,
			IPVersion:    int(f.reader.Metadata.IPVersion),
			BuildTime:    f.reader.Metadata.BuildTime(),
			Size:         f.sig.size,
		}
	}
	return out
}

// LookupPoint looks ip up and fills p on the hot path: it reads only the
// country, continent and coordinates and allocates nothing. It returns
// false (and a zero p) when no file has the address, when d is closed or
// when ip is invalid. IPv4-mapped IPv6 addresses are looked up as IPv4. A
// record without coordinates gets its country's centroid (p.Centroid).
// Each file keeps a bounded cache of answers by record, so addresses that
// share a record (the networks of one city) decode it only once.
func (d *DB) LookupPoint(ip netip.Addr, p *Point) bool {
	return d.lookupPoint(ip, p, true)
}

// lookupPoint is LookupPoint with the per-file point cache used (cached) or
// bypassed, for tests that compare the two.
func (d *DB) lookupPoint(ip netip.Addr, p *Point, cached bool) bool {
	*p = Point{}
	fs := d.cur.Load()
	if fs == nil || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, f := range fs.files {
		if pt, ok := f.lookupPoint(ip, cached); ok {
			*p = pt
			return true
		}
	}
	return false
}

// pointOf derives the LookupPoint answer from a record decoded without
// full. It depends on nothing but rec (and the built-in country table), so
// it can be cached by record. A record with neither a country nor
// coordinates gives the zero Point (OK unset): lookups try the next file.
func pointOf(rec *fields) Point {
	var p Point
	cc, hasCC := rec.countryCode()
	if !hasCC && !rec.coords() {
		return p
	}
	p.OK = true
	if hasCC {
		p.Country = cc
	}
	p.Continent = rec.continent
	var info countryInfo
	var known bool
	if hasCC {
		info, known = countryByCode(cc)
	}
	if !rec.hasContinent && known {
		p.Continent = info.continent
	}
	switch {
	case rec.coords():
		p.Lat, p.Lon, p.HasCoords = float32(rec.lat), float32(rec.lon), true
	case known:
		p.Lat, p.Lon, p.HasCoords, p.Centroid = float32(info.lat), float32(info.lon), true, true
	}
	return p
}

// Lookup looks ip up and returns the full location, including the city
// name and time zone. It returns an error wrapping ErrNotFound when no
// file has the address, ErrInvalidAddr for an invalid ip, ErrClosed after
// Close, and ErrCorrupt when a matching record cannot be decoded and no
// other file answers.
func (d *DB) Lookup(ip netip.Addr) (Location, error) {
	fs := d.cur.Load()
	if fs == nil {
		return Location{}, ErrClosed
	}
	if !ip.IsValid() {
		return Location{}, fmt.Errorf("lookup: %w", ErrInvalidAddr)
	}
	ip = ip.Unmap()
	var firstErr error
	for _, f := range fs.files {
		var rec fields
		found, pfx, err := f.lookup(ip, &rec, true)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("lookup %s in %q: %w: %w", ip, f.path, ErrCorrupt, err)
			}
			continue
		}
		if !found {
			continue
		}
		cc, hasCC := rec.countryCode()
		if !hasCC && !rec.coords() {
			continue
		}
		loc := Location{
			City:     rec.city,
			TimeZone: rec.timeZone,
			Network:  pfx.String(),
			Schema:   f.schema.String(),
			Source:   SourceNone,
		}
		var info countryInfo
		var known bool
		if hasCC {
			loc.Country = codeString(cc)
			info, known = countryByCode(cc)
		}
		switch {
		case rec.hasContinent:
			loc.Continent = codeString(rec.continent)
		case known:
			loc.Continent = codeString(info.continent)
		}
		switch {
		case rec.coords():
			loc.Lat, loc.Lon, loc.HasCoords, loc.Source = rec.lat, rec.lon, true, SourceRecord
		case known:
			loc.Lat, loc.Lon, loc.HasCoords, loc.Source = info.lat, info.lon, true, SourceCentroid
		}
		return loc, nil
	}
	if firstErr != nil {
		return Location{}, firstErr
	}
	return Location{}, fmt.Errorf("lookup %s: %w", ip, ErrNotFound)
}

// Reload re-reads every file and, only if all of them load, swaps them in
// atomically. On error the files in use are kept and the error is
// returned. Lookups running during a Reload see either the old or the new
// files. Reload and Close are serialised.
func (d *DB) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur.Load() == nil {
		return ErrClosed
	}
	fs, err := loadAll(d.paths)
	if err != nil {
		return fmt.Errorf("reload geo db: %w", err)
	}
	d.cur.Store(fs)
	return nil
}

// Watch polls the size and modification time of every file each period
// and calls Reload when one changes. Errors (a file that cannot be stat'ed
// or reloaded) go to onErr, which may be nil; each distinct change is
// tried once, so a broken file is reported once and retried only when it
// changes again. Watch blocks until ctx is done or d is closed; run it in a
// goroutine you own. onErr is called from Watch's goroutine.
func (d *DB) Watch(ctx context.Context, every time.Duration, onErr func(error)) {
	if every <= 0 {
		every = time.Minute
	}
	report := func(err error) {
		if onErr != nil {
			onErr(err)
		}
	}
	tried := make(map[string]fileSig, len(d.paths))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.closed:
			return
		case <-t.C:
		}
		fs := d.cur.Load()
		if fs == nil {
			return
		}
		changed := false
		for i, p := range d.paths {
			now, err := statSig(p)
			if err != nil {
				now = fileSig{missing: true}
			}
			if now == fs.files[i].sig || now == tried[p] {
				continue
			}
			tried[p] = now
			if err != nil {
				report(fmt.Errorf("watch geo db: %w", err))
				continue
			}
			changed = true
		}
		if !changed {
			continue
		}
		if err := d.Reload(); err != nil && !errors.Is(err, ErrClosed) {
			report(err)
		}
	}
}

// Close releases the files; later lookups fail with ErrClosed (LookupPoint
// returns false) and Watch returns. Close is idempotent and returns nil.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.once.Do(func() { close(d.closed) })
	d.cur.Store(nil)
	return nil
}

// codeString converts a two-letter code to a string, "" for a zero code.
func codeString(c [2]byte) string {
	if c == ([2]byte{}) {
		return ""
	}
	return string(c[:])
}

// statSig returns the size and modification time of path.
func statSig(path string) (fileSig, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileSig{}, fmt.Errorf("stat %q: %w", path, err)
	}
	return fileSig{size: st.Size(), mod: st.ModTime().UnixNano()}, nil
}
