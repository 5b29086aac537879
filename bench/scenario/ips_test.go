package scenario

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestIPsFromCIDRs(t *testing.T) {
	prefixes := []netip.Prefix{
		netip.MustParsePrefix("81.2.69.0/24"),   // GB test range
		netip.MustParsePrefix("2.125.160.0/19"), // partial byte
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("175.16.199.7/32"),
	}
	ips, err := IPsFromCIDRs(prefixes, 400, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 400 {
		t.Fatalf("%d ips, want 400", len(ips))
	}
	per := make([]map[netip.Addr]bool, len(prefixes))
	for i := range per {
		per[i] = map[netip.Addr]bool{}
	}
	for i, ip := range ips {
		p := prefixes[i%len(prefixes)]
		if !p.Contains(ip) {
			t.Errorf("ip %d = %v not in %v", i, ip, p)
		}
		per[i%len(prefixes)][ip] = true
	}
	for i, m := range per[:3] {
		if len(m) < 50 {
			t.Errorf("prefix %v: only %d distinct addresses of 100", prefixes[i], len(m))
		}
	}
	if len(per[3]) != 1 {
		t.Errorf("/32 gave %d addresses", len(per[3]))
	}
	again, _ := IPsFromCIDRs(prefixes, 400, 42)
	if !slices.Equal(ips, again) {
		t.Error("same seed gave a different list")
	}
	other, _ := IPsFromCIDRs(prefixes, 400, 43)
	if slices.Equal(ips, other) {
		t.Error("different seeds gave the same list")
	}
	for _, bad := range []struct {
		p []netip.Prefix
		n int
	}{{nil, 3}, {prefixes, -1}, {[]netip.Prefix{{}}, 1}} {
		if _, err := IPsFromCIDRs(bad.p, bad.n, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("IPsFromCIDRs(%v, %d) err = %v, want ErrInvalid", bad.p, bad.n, err)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"81.2.69.0/24, 2001:db8::/32", 2, ""},
		{"", 0, ""},
		{"81.2.69.0/24,,", 1, ""},
		{"81.2.69.0/24,banana", 0, "prefix 2"},
	}
	for _, tc := range tests {
		got, err := ParsePrefixes(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParsePrefixes(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != tc.want {
			t.Errorf("ParsePrefixes(%q) = %v, %v; want %d prefixes", tc.in, got, err, tc.want)
		}
	}
}

var readIPsCases = []struct {
	name    string
	in      string
	want    []string
	wantErr string
}{
	{"plain", "81.2.69.1\n2001:db8::1\n", []string{"81.2.69.1", "2001:db8::1"}, ""},
	{"comments and blanks", "# clients\n\n  81.2.69.1  \r\n#x\n175.16.199.1", []string{"81.2.69.1", "175.16.199.1"}, ""},
	{"empty", "", nil, ""},
	{"bad line 3", "81.2.69.1\n\n81.2.69.300\n", nil, "line 3"},
	{"cidr is not an ip", "81.2.69.0/24\n", nil, "line 1"},
}

func TestReadIPs(t *testing.T) {
	for _, tc := range readIPsCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadIPs(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Errorf("got %v, want %v", s, tc.want)
			}
		})
	}
}

func TestReadIPsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ips.txt")
	if err := os.WriteFile(p, []byte("81.2.69.1\nnope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadIPsFile(p)
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), p) {
		t.Errorf("err = %v, want one naming the file and line 2", err)
	}
	if _, err := ReadIPsFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file err = %v", err)
	}
}

func FuzzReadIPs(f *testing.F) {
	for _, tc := range readIPsCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ips, err := ReadIPs(strings.NewReader(in))
		if err != nil {
			if !strings.Contains(err.Error(), "line") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		// Round trip: writing the addresses back reads the same list.
		var b strings.Builder
		for _, a := range ips {
			b.WriteString(a.String() + "\n")
		}
		again, err := ReadIPs(strings.NewReader(b.String()))
		if err != nil || !slices.Equal(ips, again) {
			t.Fatalf("round trip: %v, %v != %v", err, again, ips)
		}
	})
}
