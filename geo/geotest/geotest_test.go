package geotest

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		recs    []Record
		opt     Options
		wantErr error
	}{
		{"bad network", []Record{{Network: "1.2.3.4/99", Country: "DE"}}, Options{}, ErrInvalidRecord},
		{"not a prefix", []Record{{Network: "nope", Country: "DE"}}, Options{}, ErrInvalidRecord},
		{"v6 in v4 tree", []Record{{Network: "2001:db8::/32", Country: "DE"}}, Options{IPVersion: 4}, ErrInvalidRecord},
		{"ok v4 tree", []Record{{Network: "192.0.2.0/24", Country: "DE"}}, Options{IPVersion: 4}, nil},
		{"ok unmasked", []Record{{Network: "192.0.2.7/24", Country: "DE"}}, Options{}, nil},
		{"ok empty", nil, Options{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".mmdb")
			err := Build(p, SchemaCity, tt.recs, tt.opt)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Build err = %v, want %v", err, tt.wantErr)
			}
			_, statErr := os.Stat(p)
			if (tt.wantErr == nil) != (statErr == nil) {
				t.Fatalf("file exists = %v, want %v", statErr == nil, tt.wantErr == nil)
			}
		})
	}
	if err := Build(filepath.Join(dir, "missing-dir", "x.mmdb"), SchemaFlat, DemoRecords(), Options{}); err == nil {
		t.Fatal("Build into a missing directory succeeded")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".geotest-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestGenerateRecords(t *testing.T) {
	a, b := GenerateRecords(1000, 7), GenerateRecords(1000, 7)
	seen := make(map[netip.Prefix]bool, len(a))
	v6 := 0
	for i, r := range a {
		if r != b[i] {
			t.Fatalf("not deterministic at %d: %+v vs %+v", i, r, b[i])
		}
		p, err := netip.ParsePrefix(r.Network)
		if err != nil || seen[p] {
			t.Fatalf("record %d network %q invalid or repeated", i, r.Network)
		}
		seen[p] = true
		if p.Addr().Is6() {
			v6++
		}
		if r.Country == "" || (!r.NoCoords && r.Lat == 0) {
			t.Fatalf("record %d incomplete: %+v", i, r)
		}
	}
	if v6 != 250 {
		t.Errorf("v6 networks = %d, want 250", v6)
	}
}

func TestDemoRecordsAddresses(t *testing.T) {
	addrs := []string{DemoHongKong, DemoAshburn, DemoFrankfurt, DemoShanghai, DemoLondon, DemoSaoPaulo,
		DemoSydney, DemoSingapore, DemoTokyo, DemoFrankfurt6, DemoAshburn6, DemoHongKong6, DemoJapan6}
	recs := DemoRecords()
	if len(recs) != len(addrs) {
		t.Fatalf("%d records, %d Demo constants", len(recs), len(addrs))
	}
	for i, r := range recs {
		if !netip.MustParsePrefix(r.Network).Contains(netip.MustParseAddr(addrs[i])) {
			t.Errorf("Demo address %s not in %s", addrs[i], r.Network)
		}
	}
	for _, s := range []Schema{SchemaCity, SchemaCountry, SchemaFlat, Schema(9)} {
		if s.String() == "" {
			t.Errorf("empty name for %d", s)
		}
	}
}
