package rules

import (
	"strings"
	"testing"
)

var langCases = []struct {
	name string
	al   string
	want []string
	ok   bool
}{
	{"exact", "de", []string{"de"}, true},
	{"primary tag match", "de-AT,de;q=0.9", []string{"de"}, true},
	{"region must match", "en-US,en;q=0.9", []string{"en-gb"}, false},
	{"region match case-insensitive", "en-gb", []string{"en-gb"}, true},
	{"region rule vs bare client", "en", []string{"en-gb"}, false},
	{"lower q ignored", "fr-FR,fr;q=0.9,de;q=0.8", []string{"de"}, false},
	{"highest q wins out of order", "fr;q=0.5, de;q=0.9", []string{"de"}, true},
	{"ties all count", "fr;q=0.8, de;q=0.8", []string{"de"}, true},
	{"implicit q=1 beats explicit", "de;q=0.9, ja", []string{"de"}, false},
	{"q=0 excluded", "de;q=0", []string{"de"}, false},
	{"q=0 then real", "de;q=0, fr;q=0.1", []string{"fr"}, true},
	{"wildcard matches nothing", "*", []string{"de"}, false},
	{"wildcard ignored for max", "*, de;q=0.5", []string{"de"}, true},
	{"no prefix without dash", "den", []string{"de"}, false},
	{"bad q skipped", "de;q=2, fr;q=0.3", []string{"de"}, false},
	{"bad q value text", "de;q=abc", []string{"de"}, false},
	{"whitespace", "  de-CH ; q=1.0 ,  en ; q=0.5 ", []string{"de"}, true},
	{"other params ignored", "de;level=1;q=0.7", []string{"de"}, true},
	{"empty header", "", []string{"de"}, false},
	{"garbage", ";;,,==", []string{"de"}, false},
	{"script subtag", "zh-Hant-HK", []string{"zh-hant"}, true},
	{"zh-HK vs zh", "zh-HK", []string{"zh"}, true},
}

func TestMatchLanguage(t *testing.T) {
	for _, tc := range langCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := matchLanguage([]byte(tc.al), tc.want); got != tc.ok {
				t.Fatalf("matchLanguage(%q, %q) = %v, want %v", tc.al, tc.want, got, tc.ok)
			}
		})
	}
}

func TestParseQ(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1000, true}, {"0", 0, true}, {"0.5", 500, true}, {"0.123", 123, true}, {"1.000", 1000, true},
		{"1.001", 0, false}, {"0.1234", 0, false}, {"2", 0, false}, {".5", 0, false}, {"0.", 0, true}, {"", 0, false}, {"0,5", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseQ([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseQ(%q) = %d %v, want %d %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// refMatchLanguage is a slow, allocation-happy reference of matchLanguage.
func refMatchLanguage(al string, want []string) bool {
	type ent struct {
		tag string
		q   int
	}
	var ents []ent
	for k, item := range strings.Split(al, ",") {
		if k >= maxLangEntries {
			break
		}
		parts := strings.Split(item, ";")
		tag := strings.Trim(parts[0], " \t")
		if !validLangRange([]byte(tag)) {
			continue
		}
		q, good := 1000, true
		for _, p := range parts[1:] {
			p = strings.Trim(p, " \t")
			if v, ok := strings.CutPrefix(strings.ToLower(p[:min(len(p), 2)]), "q="); ok && v == "" {
				qq, ok := parseQ([]byte(strings.Trim(p[2:], " \t")))
				if !ok {
					good = false
					break
				}
				q = qq
			}
		}
		if good {
			ents = append(ents, ent{tag, q})
		}
	}
	best := 0
	for _, e := range ents {
		if e.tag != "*" && e.q > best {
			best = e.q
		}
	}
	if best == 0 {
		return false
	}
	for _, e := range ents {
		if e.q != best {
			continue
		}
		lt := strings.ToLower(e.tag)
		for _, w := range want {
			if lt == w || strings.HasPrefix(lt, w+"-") {
				return true
			}
		}
	}
	return false
}

func FuzzAcceptLanguage(f *testing.F) {
	for _, tc := range langCases {
		f.Add(tc.al, strings.Join(tc.want, " "))
	}
	f.Fuzz(func(t *testing.T, al, wants string) {
		var want []string
		for _, w := range strings.Fields(wants) {
			if w != "*" && validLangRange([]byte(w)) {
				want = append(want, strings.ToLower(w))
			}
		}
		got := matchLanguage([]byte(al), want)
		if ref := refMatchLanguage(al, want); got != ref {
			t.Fatalf("matchLanguage(%q, %q) = %v, reference %v", al, want, got, ref)
		}
	})
}
