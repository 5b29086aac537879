package geo

import (
	"math"
	"strconv"

	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"

	"github.com/refrouter/refrouter/internal/ascii"
)

// fields holds what geo reads from one database record. The same walker
// understands the MaxMind City/Country layout (nested maps) and the flat
// ip-location-db layout (top-level keys), since their keys do not overlap.
type fields struct {
	country, regCountry, continent [2]byte
	lat, lon                       float64

	hasCountry, hasRegCountry, hasContinent bool
	hasLat, hasLon, hasLocation             bool
	flat                                    bool // saw a country_code key

	// Only filled when decoding with full set.
	city, timeZone string
}

// coords reports whether the record holds a usable latitude and longitude.
func (f *fields) coords() bool {
	return f.hasLat && f.hasLon
}

// countryCode returns the country, falling back to registered_country.
func (f *fields) countryCode() ([2]byte, bool) {
	if f.hasCountry {
		return f.country, true
	}
	return f.regCountry, f.hasRegCountry
}

// pointDone reports whether the hot path has everything it needs, so the
// walker can stop before visiting the remaining keys: a MaxMind record
// whose country, continent and location maps were read, or a flat record
// (which has no continent) with its country and coordinates.
func (f *fields) pointDone() bool {
	if f.flat {
		return f.hasCountry && f.coords()
	}
	return f.hasCountry && f.hasContinent && f.hasLocation
}

// decodeRecord walks the record map at c. data is the data section that c
// indexes into, used to read two-letter codes without allocating. With
// full unset it reads only codes and coordinates and allocates nothing.
func decodeRecord(c mmdbdata.Cursor, data []byte, f *fields, full bool) error {
	m, err := c.Map()
	if err != nil {
		return err
	}
	var next mmdbdata.Cursor
	for {
		key, v, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "country":
			next, err = readCodeIn(v, data, "iso_code", &f.country, &f.hasCountry)
		case "registered_country":
			next, err = readCodeIn(v, data, "iso_code", &f.regCountry, &f.hasRegCountry)
		case "continent":
			next, err = readCodeIn(v, data, "code", &f.continent, &f.hasContinent)
		case "location":
			f.hasLocation = true
			next, err = readLocation(v, f, full)
		case "country_code": // flat schema
			f.flat = true
			next, err = readCode(v, data, &f.country, &f.hasCountry)
		case "latitude": // flat schema
			next, err = readCoord(v, &f.lat, &f.hasLat, 90)
		case "longitude": // flat schema
			next, err = readCoord(v, &f.lon, &f.hasLon, 180)
		case "timezone": // flat schema
			if full {
				next, err = readOptString(v, &f.timeZone)
			} else {
				next, err = v.Skip()
			}
		case "city":
			if full {
				next, err = readCity(v, &f.city)
			} else {
				next, err = v.Skip()
			}
		default:
			next, err = v.Skip()
		}
		if err != nil {
			return err
		}
		if !full && f.pointDone() {
			return nil
		}
	}
	return m.Err()
}

// readCode reads a two-letter code at v without allocating. Values that are
// not two ASCII letters are skipped and leave has unchanged.
func readCode(v mmdbdata.Cursor, data []byte, dst *[2]byte, has *bool) (mmdbdata.Cursor, error) {
	off, err := v.Offset()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if off+3 <= uint(len(data)) {
		ctrl := data[off]
		if mmdbdata.Kind(ctrl>>5) == mmdbdata.KindString && ctrl&0x1f == 2 {
			a, b := ascii.Upper(data[off+1]), ascii.Upper(data[off+2])
			if isUpper(a) && isUpper(b) {
				*dst = [2]byte{a, b}
				*has = true
			}
		}
	}
	return v.Skip()
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// readCodeIn reads the code stored under key in the map at v.
func readCodeIn(v mmdbdata.Cursor, data []byte, key string, dst *[2]byte, has *bool) (mmdbdata.Cursor, error) {
	if k, err := v.Kind(); err != nil {
		return mmdbdata.Cursor{}, err
	} else if k != mmdbdata.KindMap {
		return v.Skip()
	}
	m, err := v.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		k, val, ok := m.Next(next)
		if !ok {
			break
		}
		if string(k) == key {
			next, err = readCode(val, data, dst, has)
		} else {
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}

// readLocation reads a MaxMind location map.
func readLocation(v mmdbdata.Cursor, f *fields, full bool) (mmdbdata.Cursor, error) {
	if k, err := v.Kind(); err != nil {
		return mmdbdata.Cursor{}, err
	} else if k != mmdbdata.KindMap {
		return v.Skip()
	}
	m, err := v.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		k, val, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(k) {
		case "latitude":
			next, err = readCoord(val, &f.lat, &f.hasLat, 90)
		case "longitude":
			next, err = readCoord(val, &f.lon, &f.hasLon, 180)
		case "time_zone":
			if full {
				next, err = readOptString(val, &f.timeZone)
			} else {
				next, err = val.Skip()
			}
		default:
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}

// readCoord reads a coordinate stored as a float, an integer or a decimal
// string. Values that are not finite or exceed limit in magnitude are
// skipped and leave has unchanged.
func readCoord(v mmdbdata.Cursor, dst *float64, has *bool, limit float64) (mmdbdata.Cursor, error) {
	k, err := v.Kind()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var (
		x    float64
		next mmdbdata.Cursor
		ok   bool
	)
	switch k {
	case mmdbdata.KindFloat64, mmdbdata.KindFloat32:
		x, next, err = v.ReadFloat()
		ok = err == nil
	case mmdbdata.KindString:
		var s string
		s, next, err = v.ReadStringMaxSize(32)
		if err == nil {
			var perr error
			x, perr = strconv.ParseFloat(s, 64)
			ok = perr == nil
		}
	case mmdbdata.KindInt32, mmdbdata.KindUint16, mmdbdata.KindUint32, mmdbdata.KindUint64:
		var (
			u      uint64
			signed bool
		)
		u, signed, next, err = v.ReadInteger()
		if err == nil {
			if signed {
				x = float64(int64(u))
			} else {
				x = float64(u)
			}
			ok = true
		}
	default:
		next, err = v.Skip()
	}
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if ok && !math.IsNaN(x) && math.Abs(x) <= limit {
		*dst = x
		*has = true
	}
	return next, nil
}

// maxStringLen bounds the strings geo copies out of a record.
const maxStringLen = 256

// readOptString reads a string, skipping values of any other kind and
// strings longer than maxStringLen.
func readOptString(v mmdbdata.Cursor, dst *string) (mmdbdata.Cursor, error) {
	k, err := v.Kind()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if k != mmdbdata.KindString {
		return v.Skip()
	}
	s, next, err := v.ReadStringMaxSize(maxStringLen)
	if err != nil {
		// Too long: skip rather than fail the whole record.
		return v.Skip()
	}
	*dst = s
	return next, nil
}

// readCity reads a MaxMind city map (names.en) or a flat city string.
func readCity(v mmdbdata.Cursor, dst *string) (mmdbdata.Cursor, error) {
	k, err := v.Kind()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	switch k {
	case mmdbdata.KindString:
		return readOptString(v, dst)
	case mmdbdata.KindMap:
	default:
		return v.Skip()
	}
	m, err := v.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		if string(key) == "names" {
			next, err = readEnglishName(val, dst)
		} else {
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}

// readEnglishName reads names["en"] from a names map.
func readEnglishName(v mmdbdata.Cursor, dst *string) (mmdbdata.Cursor, error) {
	if k, err := v.Kind(); err != nil {
		return mmdbdata.Cursor{}, err
	} else if k != mmdbdata.KindMap {
		return v.Skip()
	}
	m, err := v.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		if string(key) == "en" {
			next, err = readOptString(val, dst)
		} else {
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}

// shape records which top-level keys a record has, for schema detection.
type shape struct {
	maxmind, flat, location bool
}

// recordShape reads the top-level keys of the record at c.
func recordShape(c mmdbdata.Cursor) (shape, error) {
	var s shape
	m, err := c.Map()
	if err != nil {
		return s, err
	}
	var next mmdbdata.Cursor
	for {
		key, v, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "country", "registered_country", "continent", "represented_country":
			s.maxmind = true
		case "location":
			s.maxmind = true
			s.location = true
		case "country_code":
			s.flat = true
		}
		if next, err = v.Skip(); err != nil {
			return s, err
		}
	}
	return s, m.Err()
}
