package geo

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// lookupJSON is the object LookupJSON prints: the queried IP and its
// Location fields.
type lookupJSON struct {
	IP string `json:"ip"`
	Location
}

// LookupJSON parses ip, looks it up in d and returns one JSON object (no
// trailing newline) with the fields "ip", "country", "continent", "lat",
// "lon", "has_coords", "city", "timezone", "source", "network" and
// "schema". It is meant for `refrouter geo lookup`. Errors wrap
// ErrInvalidAddr for an unparsable ip and otherwise those of Lookup.
func LookupJSON(d *DB, ip string) ([]byte, error) {
	addr, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return nil, fmt.Errorf("parse ip %q: %w: %w", ip, ErrInvalidAddr, err)
	}
	loc, err := d.Lookup(addr)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(lookupJSON{IP: addr.String(), Location: loc})
	if err != nil {
		return nil, fmt.Errorf("encode location of %s: %w", addr, err)
	}
	return b, nil
}
