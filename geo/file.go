package geo

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// Schema is the record layout of a database file.
type Schema uint8

const (
	// SchemaUnknown is the zero Schema; Open rejects such files.
	SchemaUnknown Schema = iota
	// SchemaCity is MaxMind GeoIP2/GeoLite2 City (or Enterprise, or any
	// database with the same nested layout and a location map).
	SchemaCity
	// SchemaCountry is MaxMind GeoIP2/GeoLite2 Country: country and
	// continent, no location.
	SchemaCountry
	// SchemaFlat is the ip-location-db flat layout (country_code, latitude,
	// longitude, city, timezone at the top level).
	SchemaFlat
)

// String returns "maxmind-city", "maxmind-country", "ip-location-db" or
// "unknown".
func (s Schema) String() string {
	switch s {
	case SchemaCity:
		return "maxmind-city"
	case SchemaCountry:
		return "maxmind-country"
	case SchemaFlat:
		return "ip-location-db"
	default:
		return "unknown"
	}
}

// fileSig identifies one version of a file on disk, for Watch.
type fileSig struct {
	size    int64
	mod     int64 // UnixNano
	missing bool
}

// file is one loaded database. It is immutable after parse, except for the
// contents of points, a cache of values derived from the immutable data
// (see pointCache), which lives and dies with the file.
type file struct {
	path     string
	sig      fileSig
	schema   Schema
	ipv4Only bool
	reader   *maxminddb.Reader
	data     []byte // data section of the file, which dec reads
	dec      *mmdbdata.Decoder
	points   pointCache // LookupPoint answers by record offset
}

// metadataStartMarker starts the metadata section of a MaxMind DB file.
var metadataStartMarker = []byte("\xAB\xCD\xEFMaxMind.com")

// schemaSamples is how many records parse reads to detect the schema.
const schemaSamples = 16

// loadFile reads path into memory and parses it.
func loadFile(path string) (*file, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open geo db %q: %w", path, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat geo db %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open geo db %q: not a regular file: %w", path, ErrCorrupt)
	}
	buf := make([]byte, 0, st.Size()+1)
	buf, err = readAll(fh, buf)
	if err != nil {
		return nil, fmt.Errorf("read geo db %q: %w", path, err)
	}
	f, err := parse(path, buf, true)
	if err != nil {
		return nil, err
	}
	f.sig = fileSig{size: st.Size(), mod: st.ModTime().UnixNano()}
	return f, nil
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// parse opens buf (which it retains; the caller must not modify it) as a
// MaxMind DB file named name. With check set it walks the whole search
// tree and decodes every distinct record once, so a corrupt file fails
// here rather than at lookup time. (Reader.Verify is not used: it rejects
// valid files with, for example, an empty description.)
func parse(name string, buf []byte, check bool) (*file, error) {
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, fmt.Errorf("open geo db %q: %w: %w", name, ErrCorrupt, err)
	}
	md := r.Metadata
	if md.IPVersion != 4 && md.IPVersion != 6 {
		return nil, fmt.Errorf("open geo db %q: ip_version %d: %w", name, md.IPVersion, ErrCorrupt)
	}
	// The data section lies between the search tree (plus a 16-byte
	// separator) and the metadata marker; record offsets index into it.
	// OpenBytes has checked these bounds already; check again cheaply.
	start := md.NodeCount*(md.RecordSize/4) + 16
	end := bytes.LastIndex(buf, metadataStartMarker)
	if end < 0 || start > uint(end) {
		return nil, fmt.Errorf("open geo db %q: bad data section: %w", name, ErrCorrupt)
	}
	f := &file{
		path:     name,
		reader:   r,
		ipv4Only: md.IPVersion == 4,
		data:     buf[start:end],
	}
	f.dec = mmdbdata.NewDecoder(f.data, 0)
	f.points = newPointCache(pointCacheSlots(len(f.data)))
	f.schema, err = f.detectSchema()
	if err != nil {
		return nil, fmt.Errorf("open geo db %q (type %q): %w", name, md.DatabaseType, err)
	}
	if check {
		if err := f.checkRecords(); err != nil {
			return nil, fmt.Errorf("check geo db %q: %w: %w", name, ErrCorrupt, err)
		}
	}
	return f, nil
}

// checkRecords walks every network of f and decodes each distinct record
// with the same walker lookups use.
func (f *file) checkRecords() error {
	seen := make(map[uintptr]struct{})
	for res := range f.reader.Networks() {
		if err := res.Err(); err != nil {
			return err
		}
		off := res.Offset()
		if _, ok := seen[off]; ok {
			continue
		}
		seen[off] = struct{}{}
		var rec fields
		if err := decodeRecord(f.dec.CursorAt(uint(off)), f.data, &rec, true); err != nil {
			return fmt.Errorf("record for %s: %w", res.Prefix(), err)
		}
	}
	return nil
}

// detectSchema reads the top-level keys of the first records, falling back
// to the metadata database_type for a file without records.
func (f *file) detectSchema() (Schema, error) {
	var maxmind, flat, location bool
	n := 0
	for res := range f.reader.Networks() {
		if err := res.Err(); err != nil {
			return SchemaUnknown, fmt.Errorf("read record: %w: %w", ErrCorrupt, err)
		}
		s, err := recordShape(f.dec.CursorAt(uint(res.Offset())))
		if err != nil {
			return SchemaUnknown, fmt.Errorf("read record %s: %w: %w", res.Prefix(), ErrCorrupt, err)
		}
		maxmind = maxmind || s.maxmind
		flat = flat || s.flat
		location = location || s.location
		if n++; n >= schemaSamples {
			break
		}
	}
	dbType := strings.ToLower(f.reader.Metadata.DatabaseType)
	cityType := strings.Contains(dbType, "city") || strings.Contains(dbType, "enterprise")
	switch {
	case maxmind && (location || cityType):
		return SchemaCity, nil
	case maxmind:
		return SchemaCountry, nil
	case flat:
		return SchemaFlat, nil
	case n > 0:
		return SchemaUnknown, ErrUnknownSchema
	}
	// No records at all: trust the database type.
	switch {
	case strings.Contains(dbType, "ip-location-db"):
		return SchemaFlat, nil
	case cityType:
		return SchemaCity, nil
	case strings.Contains(dbType, "country"):
		return SchemaCountry, nil
	}
	return SchemaUnknown, ErrUnknownSchema
}

// lookup finds ip (already unmapped) in f and decodes its record into rec.
// It returns found=false without error when f has no record for ip or
// cannot hold its address family. It allocates only when full is set.
func (f *file) lookup(ip netip.Addr, rec *fields, full bool) (found bool, pfx netip.Prefix, err error) {
	if f.ipv4Only && !ip.Is4() {
		return false, netip.Prefix{}, nil
	}
	res := f.reader.Lookup(ip)
	if err := res.Err(); err != nil {
		return false, netip.Prefix{}, err
	}
	if !res.Found() {
		return false, netip.Prefix{}, nil
	}
	if err := decodeRecord(f.dec.CursorAt(uint(res.Offset())), f.data, rec, full); err != nil {
		return false, netip.Prefix{}, err
	}
	if full {
		pfx = res.Prefix()
	}
	return true, pfx, nil
}

// lookupPoint finds ip (already unmapped) in f and returns the Point of its
// record, with ok=false when f has no record for ip, cannot hold its
// address family, cannot decode the record, or the record has neither a
// country nor coordinates. With cached set it answers from, and fills,
// f.points; the answer is the same either way. Failed decodes are not
// cached. It does not allocate.
func (f *file) lookupPoint(ip netip.Addr, cached bool) (p Point, ok bool) {
	if f.ipv4Only && !ip.Is4() {
		return Point{}, false
	}
	res := f.reader.Lookup(ip)
	if !res.Found() { // also on error
		return Point{}, false
	}
	off := res.Offset()
	if cached {
		if p, hit := f.points.get(off); hit {
			return p, p.OK
		}
	}
	var rec fields
	if err := decodeRecord(f.dec.CursorAt(uint(off)), f.data, &rec, false); err != nil {
		return Point{}, false
	}
	p = pointOf(&rec)
	if cached {
		f.points.put(off, p)
	}
	return p, p.OK
}
