package geo_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/geo/geotest"
)

func ExampleDB_LookupPoint() {
	dir, err := os.MkdirTemp("", "geo-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "demo.mmdb")
	if err := geotest.BuildDemo(path); err != nil {
		panic(err)
	}
	db, err := geo.Open(path)
	if err != nil {
		panic(err)
	}
	defer db.Close()

	var p geo.Point
	if db.LookupPoint(netip.MustParseAddr("203.0.113.7"), &p) {
		fmt.Printf("%s %s %.2f %.2f\n", p.Country[:], p.Continent[:], p.Lat, p.Lon)
	}
	b, _ := geo.LookupJSON(db, "::ffff:100.68.0.1")
	fmt.Println(string(b))
	// Output:
	// DE EU 50.11 8.68
	// {"ip":"::ffff:100.68.0.1","country":"SG","continent":"AS","lat":1.35,"lon":103.8,"has_coords":true,"timezone":"Asia/Singapore","source":"centroid","network":"100.68.0.0/16","schema":"maxmind-city"}
}
