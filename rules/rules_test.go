package rules

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // tests must not depend on the machine's zoneinfo
)

var allowed = []string{"live.example.com"}

func mustParse(tb testing.TB, raw string) *Set {
	tb.Helper()
	s, err := Parse([]byte(raw), allowed)
	if err != nil {
		tb.Fatalf("Parse: %v\n%s", err, raw)
	}
	return s
}

const (
	uaIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
	uaAndroid = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0.0.0 Mobile Safari/537.36"
	uaWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0.0.0 Safari/537.36"
	uaIPad    = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
)

const exampleRules = `[
  {"when": {"country": ["DE","AT"], "continent": ["EU"], "os": ["ios","android","desktop"], "device": ["mobile","desktop","tablet"],
            "language": ["de","en-GB"], "time": {"from": "2026-11-21T00:00:00Z", "to": "2026-12-21T00:00:00Z", "daily_from": "18:00", "daily_to": "23:00", "tz": "Asia/Hong_Kong"},
            "cidr": ["203.0.113.0/24"]},
   "destination": "https://live.example.com/de"},
  {"when": {"country": ["hk"], "device": ["mobile"]}, "destination": "https://live.example.com/hk-mobile"},
  {"when": {"cidr": ["198.51.100.0/24", "2001:db8::/32"]}, "destination": "https://live.example.com/office"},
  {"when": {"language": ["zh-Hant"]}, "destination": "https://live.example.com/zh-hant"},
  {"when": {"os": ["ios"], "device": ["tablet"]}, "destination": "https://live.example.com/ipad"},
  {"when": {"country": ["US"]}, "split": [{"destination": "https://live.example.com/a", "weight": 50}, {"destination": "https://live.example.com/b", "weight": 50}]}
]`

func TestMatch(t *testing.T) {
	s := mustParse(t, exampleRules)
	// 2026-11-25 11:00 UTC = 19:00 in Hong Kong: inside the daily window.
	inWindow := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	deReq := func() Request {
		return Request{Country: "DE", Continent: "EU", UA: []byte(uaIPhone), AcceptLanguage: []byte("de-DE,de;q=0.9"),
			IP: netip.MustParseAddr("203.0.113.9"), Now: inWindow}
	}
	tests := []struct {
		name   string
		req    func() Request
		want   string
		sticky bool
	}{
		{"all conditions hold", deReq, "https://live.example.com/de", false},
		{"AT also", func() Request { r := deReq(); r.Country = "AT"; return r }, "https://live.example.com/de", false},
		{"country case-insensitive", func() Request { r := deReq(); r.Country = "de"; return r }, "https://live.example.com/de", false},
		{"en-GB language", func() Request { r := deReq(); r.AcceptLanguage = []byte("en-GB"); return r }, "https://live.example.com/de", false},
		{"desktop os", func() Request { r := deReq(); r.UA = []byte(uaWindows); return r }, "https://live.example.com/de", false},
		{"wrong country falls through", func() Request { r := deReq(); r.Country = "FR"; return r }, "", false},
		{"wrong language falls through", func() Request { r := deReq(); r.AcceptLanguage = []byte("fr"); return r }, "", false},
		{"outside cidr falls through", func() Request { r := deReq(); r.IP = netip.MustParseAddr("192.0.2.1"); return r }, "", false},
		{"outside daily window", func() Request { r := deReq(); r.Now = inWindow.Add(5 * time.Hour); return r }, "", false},
		{"before from", func() Request { r := deReq(); r.Now = inWindow.AddDate(0, 0, -10); return r }, "", false},
		{"after to", func() Request { r := deReq(); r.Now = inWindow.AddDate(0, 1, 0); return r }, "", false},
		{"zero now fails time", func() Request { r := deReq(); r.Now = time.Time{}; return r }, "", false},
		{"hk mobile", func() Request { return Request{Country: "HK", UA: []byte(uaAndroid)} }, "https://live.example.com/hk-mobile", false},
		{"hk desktop falls through", func() Request { return Request{Country: "HK", UA: []byte(uaWindows)} }, "", false},
		{"office v4", func() Request { return Request{IP: netip.MustParseAddr("198.51.100.20")} }, "https://live.example.com/office", false},
		{"office mapped v4", func() Request { return Request{IP: netip.MustParseAddr("::ffff:198.51.100.20")} }, "https://live.example.com/office", false},
		{"office v6", func() Request { return Request{IP: netip.MustParseAddr("2001:db8::1")} }, "https://live.example.com/office", false},
		{"invalid ip", func() Request { return Request{} }, "", false},
		{"language script", func() Request { return Request{AcceptLanguage: []byte("zh-Hant-HK,zh;q=0.8")} }, "https://live.example.com/zh-hant", false},
		{"ipad", func() Request { return Request{UA: []byte(uaIPad)} }, "https://live.example.com/ipad", false},
		{"iphone not ipad", func() Request { return Request{UA: []byte(uaIPhone)} }, "", false},
		{"split", func() Request { return Request{Country: "US", Sticky: []byte("click-1")} }, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			dest, sticky, ok := s.Match(&r)
			if tc.sticky {
				if !ok || (dest != "https://live.example.com/a" && dest != "https://live.example.com/b") {
					t.Fatalf("split Match = %q %v", dest, ok)
				}
				if want := "5." + dest[len(dest)-1:]; (dest[len(dest)-1] == 'a' && sticky != "5.0") || (dest[len(dest)-1] == 'b' && sticky != "5.1") {
					t.Fatalf("sticky = %q for %q (%s)", sticky, dest, want)
				}
				return
			}
			if ok != (tc.want != "") || dest != tc.want || sticky != "" {
				t.Fatalf("Match = (%q, %q, %v), want %q", dest, sticky, ok, tc.want)
			}
		})
	}
}

func TestFirstMatchWins(t *testing.T) {
	s := mustParse(t, `[{"when":{"country":["DE"]},"destination":"https://live.example.com/1"},
		{"destination":"https://live.example.com/2"},
		{"when":{"country":["DE"]},"destination":"https://live.example.com/3"}]`)
	for _, c := range []struct{ country, want string }{{"DE", "/1"}, {"FR", "/2"}, {"", "/2"}} {
		dest, _, ok := s.Match(&Request{Country: c.country})
		if !ok || !strings.HasSuffix(dest, c.want) {
			t.Errorf("country %q: Match = %q %v, want %s", c.country, dest, ok, c.want)
		}
	}
	var empty *Set
	if _, _, ok := empty.Match(&Request{}); ok {
		t.Error("nil Set matched")
	}
	if s2 := mustParse(t, `null`); s2.Len() != 0 {
		t.Error("null rules not empty")
	}
}

func TestTimeWindows(t *testing.T) {
	tests := []struct {
		name string
		tj   string
		now  time.Time
		want bool
	}{
		{"daily in tz", `{"daily_from":"18:00","daily_to":"23:00","tz":"Asia/Hong_Kong"}`, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), true},
		{"daily before in tz", `{"daily_from":"18:00","daily_to":"23:00","tz":"Asia/Hong_Kong"}`, time.Date(2026, 11, 25, 9, 59, 0, 0, time.UTC), false},
		{"daily end exclusive", `{"daily_from":"18:00","daily_to":"23:00","tz":"Asia/Hong_Kong"}`, time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC), false},
		{"daily in utc would differ", `{"daily_from":"18:00","daily_to":"23:00"}`, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), false},
		{"wrap midnight late", `{"daily_from":"22:00","daily_to":"02:00","tz":"Europe/Berlin"}`, time.Date(2026, 11, 25, 22, 30, 0, 0, time.UTC), true},
		{"wrap midnight early", `{"daily_from":"22:00","daily_to":"02:00","tz":"Europe/Berlin"}`, time.Date(2026, 11, 25, 0, 30, 0, 0, time.UTC), true},
		{"wrap midnight outside", `{"daily_from":"22:00","daily_to":"02:00","tz":"Europe/Berlin"}`, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), false},
		{"to 24:00", `{"daily_from":"20:00","daily_to":"24:00"}`, time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC), true},
		{"dst summer berlin", `{"daily_from":"18:00","daily_to":"19:00","tz":"Europe/Berlin"}`, time.Date(2026, 7, 1, 16, 30, 0, 0, time.UTC), true},
		{"dst winter berlin", `{"daily_from":"18:00","daily_to":"19:00","tz":"Europe/Berlin"}`, time.Date(2026, 12, 1, 16, 30, 0, 0, time.UTC), false},
		{"from inclusive", `{"from":"2026-11-21T00:00:00Z"}`, time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), true},
		{"to exclusive", `{"to":"2026-11-21T00:00:00+08:00"}`, time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC), false},
		{"to offset", `{"to":"2026-11-21T00:00:00+08:00"}`, time.Date(2026, 11, 20, 15, 59, 0, 0, time.UTC), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, `[{"when":{"time":`+tc.tj+`},"destination":"https://live.example.com/t"}]`)
			_, _, ok := s.Match(&Request{Now: tc.now})
			if ok != tc.want {
				t.Fatalf("at %v: match = %v, want %v", tc.now, ok, tc.want)
			}
		})
	}
}

func TestSplitWeightsAndStickiness(t *testing.T) {
	s := mustParse(t, `[{"when":{"country":["XX"]},"destination":"https://live.example.com/x"},
		{"split":[{"destination":"https://live.example.com/a","weight":70},
		          {"destination":"https://live.example.com/b","weight":20},
		          {"destination":"https://live.example.com/c","weight":10},
		          {"destination":"https://live.example.com/off","weight":0}]}]`)
	const n = 10000
	counts := map[string]int{}
	for i := range n {
		key := []byte(fmt.Sprintf("click-%d", i))
		dest, sticky, ok := s.Match(&Request{Sticky: key})
		if !ok {
			t.Fatal("split did not match")
		}
		counts[dest]++
		// The same key always gets the same arm.
		if d2, s2, _ := s.Match(&Request{Sticky: key}); d2 != dest || s2 != sticky {
			t.Fatalf("key %s: %s then %s", key, dest, d2)
		}
		// The cookie keeps the arm.
		if d3, s3, _ := s.Match(&Request{Sticky: []byte(sticky)}); d3 != dest || s3 != sticky {
			t.Fatalf("cookie %s: got %s, want %s", sticky, d3, dest)
		}
	}
	want := map[string]float64{"a": 0.7, "b": 0.2, "c": 0.1}
	for arm, frac := range want {
		got := float64(counts["https://live.example.com/"+arm]) / n
		// 4 standard deviations of a binomial proportion.
		tol := 4 * math.Sqrt(frac*(1-frac)/n)
		if math.Abs(got-frac) > tol {
			t.Errorf("arm %s share %.4f, want %.2f ± %.4f", arm, got, frac, tol)
		}
	}
	if counts["https://live.example.com/off"] != 0 {
		t.Errorf("zero-weight arm chosen %d times", counts["https://live.example.com/off"])
	}
	tests := []struct {
		cookie string
		want   string // "" means any hashed arm
	}{
		{"1.1", "https://live.example.com/b"},
		{"1.2", "https://live.example.com/c"},
		{"1.0", "https://live.example.com/a"},
		{"1.3", ""},  // zero-weight arm is not kept
		{"1.9", ""},  // out of range
		{"0.1", ""},  // another rule's cookie
		{"1.", ""},   // malformed
		{"x.1", ""},  // malformed
		{"11.1", ""}, // other rule
	}
	for _, tc := range tests {
		dest, sticky, _ := s.Match(&Request{Sticky: []byte(tc.cookie)})
		if tc.want != "" && dest != tc.want {
			t.Errorf("cookie %q: got %s, want %s", tc.cookie, dest, tc.want)
		}
		if tc.want == "" && (dest == "https://live.example.com/off" || !strings.HasPrefix(sticky, "1.")) {
			t.Errorf("cookie %q: got %s (%s)", tc.cookie, dest, sticky)
		}
	}
}

func TestParseErrors(t *testing.T) {
	okDest := `"destination":"https://live.example.com/x"`
	tests := []struct {
		name     string
		raw      string
		rule     int
		field    string
		wantDest bool // wraps ErrDestination rather than ErrInvalid
	}{
		{"not json", `{`, -1, "", false},
		{"object not array", `{"when":{}}`, -1, "", false},
		{"trailing data", `[] []`, -1, "", false},
		{"unknown rule field", `[{` + okDest + `,"extra":1}]`, 0, "", false},
		{"unknown when field", `[{` + okDest + `},{"when":{"city":["x"]},` + okDest + `}]`, 1, "", false},
		{"unknown time field", `[{"when":{"time":{"day":"mon"}},` + okDest + `}]`, 0, "", false},
		{"null rule", `[null]`, 0, "", false},
		{"no destination", `[{"when":{}}]`, 0, "destination", false},
		{"both", `[{` + okDest + `,"split":[{"destination":"https://live.example.com/a","weight":1}]}]`, 0, "destination", false},
		{"bad host", `[{"destination":"https://evil.net/"}]`, 0, "destination", true},
		{"open redirect in split", `[{` + okDest + `},{"split":[{"destination":"https://live.example.com/a","weight":1},{"destination":"//evil.net","weight":1}]}]`, 1, "split[1].destination", true},
		{"zero weights", `[{"split":[{"destination":"https://live.example.com/a","weight":0}]}]`, 0, "split", false},
		{"negative weight", `[{"split":[{"destination":"https://live.example.com/a","weight":-1}]}]`, 0, "split[0].weight", false},
		{"fractional weight", `[{"split":[{"destination":"https://live.example.com/a","weight":0.5}]}]`, 0, "", false},
		{"empty split", `[{"split":[]}]`, 0, "destination", false},
		{"bad country", `[{"when":{"country":["DE","DEU"]},` + okDest + `}]`, 0, "when.country[1]", false},
		{"unicode country", `[{"when":{"country":["ſſ"]},` + okDest + `}]`, 0, "when.country[0]", false},
		{"bad continent", `[{"when":{"continent":["XX"]},` + okDest + `}]`, 0, "when.continent[0]", false},
		{"bad os", `[{"when":{"os":["beos"]},` + okDest + `}]`, 0, "when.os[0]", false},
		{"bad device", `[{"when":{"device":["watch"]},` + okDest + `}]`, 0, "when.device[0]", false},
		{"empty list", `[{"when":{"device":[]},` + okDest + `}]`, 0, "when.device", false},
		{"bad language", `[{"when":{"language":["en_GB"]},` + okDest + `}]`, 0, "when.language[0]", false},
		{"wildcard language", `[{"when":{"language":["*"]},` + okDest + `}]`, 0, "when.language[0]", false},
		{"bad cidr", `[{"when":{"cidr":["10.0.0.0/33"]},` + okDest + `}]`, 0, "when.cidr[0]", false},
		{"bad from", `[{"when":{"time":{"from":"yesterday"}},` + okDest + `}]`, 0, "when.time.from", false},
		{"to before from", `[{"when":{"time":{"from":"2026-11-21T00:00:00Z","to":"2026-11-20T00:00:00Z"}},` + okDest + `}]`, 0, "when.time.to", false},
		{"bad tz", `[{"when":{"time":{"tz":"Mars/Olympus"}},` + okDest + `}]`, 0, "when.time.tz", false},
		{"local tz", `[{"when":{"time":{"tz":"Local"}},` + okDest + `}]`, 0, "when.time.tz", false},
		{"path tz", `[{"when":{"time":{"tz":"../../etc/passwd"}},` + okDest + `}]`, 0, "when.time.tz", false},
		{"daily half", `[{"when":{"time":{"daily_from":"18:00"}},` + okDest + `}]`, 0, "when.time.daily_from", false},
		{"daily bad", `[{"when":{"time":{"daily_from":"18:00","daily_to":"25:00"}},` + okDest + `}]`, 0, "when.time.daily_to", false},
		{"daily empty window", `[{"when":{"time":{"daily_from":"18:00","daily_to":"18:00"}},` + okDest + `}]`, 0, "when.time.daily_to", false},
		{"too many rules", `[` + strings.Repeat(`{`+okDest+`},`, MaxRules) + `{` + okDest + `}]`, -1, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.raw), allowed)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			if pe.Rule != tc.rule || pe.Field != tc.field {
				t.Fatalf("error at rule %d field %q, want rule %d field %q (%v)", pe.Rule, pe.Field, tc.rule, tc.field, err)
			}
			if tc.wantDest != errors.Is(err, ErrDestination) || tc.wantDest == errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v: wrong sentinel (want destination=%v)", err, tc.wantDest)
			}
			if tc.rule >= 0 && !strings.Contains(err.Error(), fmt.Sprintf("rules[%d]", tc.rule)) {
				t.Fatalf("error %q does not name the rule", err)
			}
		})
	}
}

func TestDestinations(t *testing.T) {
	s := mustParse(t, exampleRules)
	ds := s.Destinations()
	if len(ds) != 7 {
		t.Fatalf("Destinations() = %d, want 7", len(ds))
	}
	for _, d := range ds {
		if err := CheckDestination(d, allowed); err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	s := mustParse(b, exampleRules)
	reqs := map[string]Request{
		"first-rule": {Country: "DE", Continent: "EU", UA: []byte(uaIPhone), AcceptLanguage: []byte("de-DE,de;q=0.9"),
			IP: netip.MustParseAddr("203.0.113.9"), Now: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)},
		"split":    {Country: "US", UA: []byte(uaWindows), AcceptLanguage: []byte("en-US,en;q=0.9"), Sticky: []byte("01JD7ZK3Q5V8N2R4T6W8Y0A2C4")},
		"no-match": {Country: "FR", UA: []byte(uaWindows), AcceptLanguage: []byte("fr-FR,fr;q=0.9,en;q=0.5")},
	}
	for name, r := range reqs {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = s.Match(&r)
			}
		})
	}
}
