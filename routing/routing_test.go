package routing

import (
	"math"
	"sync"
	"testing"
)

func demoNodes() []Node {
	return []Node{
		{Name: "hk-1", Region: "ap-east", URL: "http://hk.example", Lat: 22.32, Lon: 114.17, Alive: true},
		{Name: "fra-1", Region: "eu-central", URL: "http://fra.example", Lat: 50.11, Lon: 8.68, Alive: true},
		{Name: "iad-1", Region: "us-east", URL: "http://iad.example", Lat: 38.95, Lon: -77.45, Alive: true},
	}
}

func newTestTable(tb testing.TB, self string, opts Options, nodes []Node) *Table {
	tb.Helper()
	t := NewTable(self, opts)
	t.Update(nodes)
	return t
}

type city struct {
	name     string
	lat, lon float64
}

var (
	hongKong  = city{"Hong Kong", 22.3193, 114.1694}
	shanghai  = city{"Shanghai", 31.2304, 121.4737}
	frankfurt = city{"Frankfurt", 50.1109, 8.6821}
	london    = city{"London", 51.5074, -0.1278}
	virginia  = city{"Virginia", 38.9586, -77.3570}
	saoPaulo  = city{"São Paulo", -23.5505, -46.6333}
	sydney    = city{"Sydney", -33.8688, 151.2093}
)

func within(got, want, frac float64) bool {
	if want == 0 {
		return math.Abs(got) < 1
	}
	return math.Abs(got-want) <= frac*want
}

func TestRankDemoRegions(t *testing.T) {
	tab := newTestTable(t, "hk-1", Options{}, demoNodes())
	tests := []struct {
		c      city
		order  []string
		distKm []float64 // expected distance to each node in order (±2 %, or <1 km when 0)
	}{
		{hongKong, []string{"hk-1", "fra-1", "iad-1"}, []float64{0, 9158, 13096}},
		{shanghai, []string{"hk-1", "fra-1", "iad-1"}, []float64{1227, 8820, 11970}},
		{frankfurt, []string{"fra-1", "iad-1", "hk-1"}, []float64{0, 6553, 9158}},
		{london, []string{"fra-1", "iad-1", "hk-1"}, []float64{638, 5922, 9623}},
		{virginia, []string{"iad-1", "fra-1", "hk-1"}, []float64{8, 6547, 13096}},
		{saoPaulo, []string{"iad-1", "fra-1", "hk-1"}, []float64{7654, 9829, 18046}},
		{sydney, []string{"hk-1", "iad-1", "fra-1"}, []float64{7376, 15676, 16483}},
	}
	for _, tc := range tests {
		t.Run(tc.c.name, func(t *testing.T) {
			got := tab.Rank(tc.c.lat, tc.c.lon)
			if len(got) != len(tc.order) {
				t.Fatalf("Rank returned %d nodes, want %d", len(got), len(tc.order))
			}
			for i, r := range got {
				if r.Name != tc.order[i] {
					t.Fatalf("rank[%d] = %s, want %s", i, r.Name, tc.order[i])
				}
				if tc.distKm[i] < 20 {
					if r.DistanceKm > 20 {
						t.Fatalf("%s distance %.1f km, want under 20", r.Name, r.DistanceKm)
					}
				} else if !within(r.DistanceKm, tc.distKm[i], 0.02) {
					t.Fatalf("%s distance %.1f km, want %.0f ±2%%", r.Name, r.DistanceKm, tc.distKm[i])
				}
				if r.Score != r.DistanceKm {
					t.Fatalf("score %v != distance %v with no penalties", r.Score, r.DistanceKm)
				}
			}
			n, ok := tab.Nearest(tc.c.lat, tc.c.lon, "")
			if !ok || n.Name != tc.order[0] {
				t.Fatalf("Nearest = %v %v, want %s", n.Name, ok, tc.order[0])
			}
		})
	}
}

func TestRankExclusionsAndPenalties(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		mutate func(ns []Node)
		c      city
		want   []string
	}{
		{"dead excluded", Options{}, func(ns []Node) { ns[1].Alive = false }, london, []string{"iad-1", "hk-1"}},
		{"all dead", Options{}, func(ns []Node) { ns[0].Alive, ns[1].Alive, ns[2].Alive = false, false, false }, london, []string{}},
		{"suspect penalised", Options{SuspectPenaltyKm: 6000}, func(ns []Node) { ns[1].Suspect = true }, london, []string{"iad-1", "fra-1", "hk-1"}},
		{"suspect small penalty keeps", Options{SuspectPenaltyKm: 1000}, func(ns []Node) { ns[1].Suspect = true }, london, []string{"fra-1", "iad-1", "hk-1"}},
		{"load penalty", Options{LoadPenaltyKm: 6000}, func(ns []Node) { ns[1].Load = 1 }, london, []string{"iad-1", "fra-1", "hk-1"}},
		{"load clamped", Options{LoadPenaltyKm: 6000}, func(ns []Node) { ns[1].Load = 50 }, london, []string{"iad-1", "fra-1", "hk-1"}},
		{"nan load counts as full", Options{LoadPenaltyKm: 6000}, func(ns []Node) { ns[1].Load = math.NaN() }, london, []string{"iad-1", "fra-1", "hk-1"}},
		{"half load not enough", Options{LoadPenaltyKm: 6000}, func(ns []Node) { ns[1].Load = 0.5 }, london, []string{"fra-1", "iad-1", "hk-1"}},
		{"bad coords dropped", Options{}, func(ns []Node) { ns[1].Lat = math.NaN() }, london, []string{"iad-1", "hk-1"}},
		{"out of range dropped", Options{}, func(ns []Node) { ns[1].Lon = 200 }, london, []string{"iad-1", "hk-1"}},
		{"negative options ignored", Options{LoadPenaltyKm: -1e9}, func(ns []Node) { ns[1].Load = 1 }, london, []string{"fra-1", "iad-1", "hk-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := demoNodes()
			tc.mutate(ns)
			tab := newTestTable(t, "hk-1", tc.opts, ns)
			got := tab.Rank(tc.c.lat, tc.c.lon)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d nodes, want %v", len(got), tc.want)
			}
			for i := range got {
				if got[i].Name != tc.want[i] {
					t.Fatalf("rank[%d] = %s, want %s", i, got[i].Name, tc.want[i])
				}
				if math.IsNaN(got[i].Score) || got[i].Score < got[i].DistanceKm {
					t.Fatalf("score %v below distance %v", got[i].Score, got[i].DistanceKm)
				}
			}
			n, ok := tab.Nearest(tc.c.lat, tc.c.lon, "")
			if ok != (len(tc.want) > 0) || (ok && n.Name != tc.want[0]) {
				t.Fatalf("Nearest = %s %v, want first of %v", n.Name, ok, tc.want)
			}
		})
	}
}

func TestUpdateDuplicateAndCopy(t *testing.T) {
	ns := demoNodes()
	ns = append(ns, Node{Name: "fra-1", Lat: 50.11, Lon: 8.68, Alive: false})
	tab := newTestTable(t, "hk-1", Options{}, ns)
	ns[0].Alive = false // caller's slice must not leak into the table
	got := tab.Rank(london.lat, london.lon)
	if len(got) != 2 || got[0].Name != "iad-1" || got[1].Name != "hk-1" {
		t.Fatalf("Rank = %+v, want last duplicate (dead fra-1) to win and hk-1 unaffected", got)
	}
	if tab.Rank(math.NaN(), 0) != nil {
		t.Fatal("Rank with NaN location must be nil")
	}
	if _, ok := tab.Nearest(91, 0, ""); ok {
		t.Fatal("Nearest with lat 91 must fail")
	}
}

func TestHysteresis(t *testing.T) {
	// Two nodes on the equator 2000 km apart; the client walks between them.
	ns := []Node{
		{Name: "a", URL: "http://a", Lat: 0, Lon: 0, Alive: true},
		{Name: "b", URL: "http://b", Lat: 0, Lon: 17.986, Alive: true},
	}
	tab := newTestTable(t, "a", Options{HysteresisKm: 100}, ns)
	lonAt := func(km float64) float64 { return km / (EarthRadiusKm * math.Pi / 180) }
	tests := []struct {
		name    string
		km      float64 // client's distance east of a
		current string
		want    string
	}{
		{"midpoint slightly towards b keeps a", 1010, "a", "a"},
		{"midpoint slightly towards a keeps b", 990, "b", "b"},
		{"margin edge keeps a", 1049, "a", "a"},
		{"past margin switches to b", 1060, "a", "b"},
		{"past margin switches to a", 940, "b", "a"},
		{"no current takes best", 1010, "", "b"},
		{"unknown current takes best", 1010, "zz", "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tab.Nearest(0, lonAt(tc.km), tc.current)
			if !ok || got.Name != tc.want {
				t.Fatalf("Nearest(%v km, current %q) = %s, want %s", tc.km, tc.current, got.Name, tc.want)
			}
		})
	}
	// No flapping: jitter of ±30 km around the midpoint never changes the choice.
	cur := "a"
	for i := range 200 {
		km := 1000 + 30*math.Sin(float64(i))
		got, _ := tab.Nearest(0, lonAt(km), cur)
		if got.Name != cur {
			t.Fatalf("step %d at %.1f km switched from %s to %s", i, km, cur, got.Name)
		}
	}
	// Ratio margin: 10 % of current's score.
	tabR := newTestTable(t, "a", Options{HysteresisRatio: 0.10}, ns)
	if got, _ := tabR.Nearest(0, lonAt(1040), "a"); got.Name != "a" {
		t.Fatalf("ratio margin: got %s, want a (b is better by 80 km < 10%% of 1040)", got.Name)
	}
	if got, _ := tabR.Nearest(0, lonAt(1100), "a"); got.Name != "b" {
		t.Fatalf("ratio margin: got %s, want b (better by 200 km > 110)", got.Name)
	}
	// A dead current is never kept.
	ns[1].Alive = true
	ns[0].Alive = false
	tab.Update(ns)
	if got, _ := tab.Nearest(0, lonAt(10), "a"); got.Name != "b" {
		t.Fatalf("dead current kept: got %s", got.Name)
	}
}

func TestDecide(t *testing.T) {
	opts := Options{HysteresisKm: 200}
	tests := []struct {
		name       string
		policy     Policy
		self       string
		c          city
		hasLoc     bool
		redirected bool
		mutate     func([]Node)
		wantName   string
		wantRedir  bool
	}{
		{"local mode never redirects", Policy{Mode: ModeLocal}, "hk-1", london, true, false, nil, "hk-1", false},
		{"default mode is local", Policy{}, "hk-1", london, true, false, nil, "hk-1", false},
		{"unknown mode is local", Policy{Mode: "weird"}, "hk-1", london, true, false, nil, "hk-1", false},
		{"far client redirected", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", london, true, false, nil, "fra-1", true},
		{"near client served", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", shanghai, true, false, nil, "hk-1", false},
		{"within threshold served", Policy{Mode: ModeRedirect, ThresholdKm: 10000}, "hk-1", london, true, false, nil, "hk-1", false},
		{"already redirected", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", london, true, true, nil, "hk-1", false},
		{"no location", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", london, false, false, nil, "hk-1", false},
		{"self nearest never redirects to self", Policy{Mode: ModeRedirect}, "fra-1", london, true, false, nil, "fra-1", false},
		{"dead target skipped", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", london, true, false, func(ns []Node) { ns[1].Alive = false }, "iad-1", true},
		{"target without URL", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "hk-1", london, true, false, func(ns []Node) { ns[1].URL = "" }, "hk-1", false},
		{"self unknown", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "sin-1", london, true, false, nil, "sin-1", false},
		{"empty self uses table self", Policy{Mode: ModeRedirect, ThresholdKm: 2000}, "", london, true, false, nil, "fra-1", true},
		{"hysteresis keeps self", Policy{Mode: ModeRedirect}, "fra-1", city{"mid-atlantic", 46, -38}, true, false, nil, "fra-1", false},
		{"past hysteresis redirects", Policy{Mode: ModeRedirect}, "fra-1", city{"west-atlantic", 46, -40}, true, false, nil, "iad-1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := demoNodes()
			if tc.mutate != nil {
				tc.mutate(ns)
			}
			tab := newTestTable(t, "hk-1", opts, ns)
			got, redir := tc.policy.Decide(tab, tc.self, tc.c.lat, tc.c.lon, tc.hasLoc, tc.redirected)
			if got.Name != tc.wantName || redir != tc.wantRedir {
				t.Fatalf("Decide = (%s, %v), want (%s, %v)", got.Name, redir, tc.wantName, tc.wantRedir)
			}
			if redir && (got.Name == tc.self || got.URL == "" || !got.Alive) {
				t.Fatalf("bad redirect target %+v", got)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		p       Policy
		wantErr bool
	}{
		{Policy{}, false},
		{Policy{Mode: ModeRedirect, ThresholdKm: 1500}, false},
		{Policy{Mode: "nearest"}, true},
		{Policy{Mode: ModeRedirect, ThresholdKm: -1}, true},
		{Policy{Mode: ModeRedirect, ThresholdKm: math.NaN()}, true},
		{Policy{Mode: ModeRedirect, ThresholdKm: math.Inf(1)}, true},
	}
	for _, tc := range tests {
		if err := tc.p.Validate(); (err != nil) != tc.wantErr {
			t.Errorf("Validate(%+v) = %v, wantErr %v", tc.p, err, tc.wantErr)
		}
	}
}

func TestDistanceKm(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want                   float64 // reference: spherical Vincenty formula, same radius
	}{
		{"London-Paris", 51.5074, -0.1278, 48.8566, 2.3522, 343.557},
		{"NYC-LA", 40.7128, -74.0060, 34.0522, -118.2437, 3935.752},
		{"Tokyo-Sydney", 35.6762, 139.6503, -33.8688, 151.2093, 7825.829},
		{"HK-Frankfurt", 22.32, 114.17, 50.11, 8.68, 9158.003},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadiusKm},
		{"poles", 90, 0, -90, 0, math.Pi * EarthRadiusKm},
		{"across dateline", 0, 179.5, 0, -179.5, 111.195},
		{"same point", 12.3, 45.6, 12.3, 45.6, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DistanceKm(tc.lat1, tc.lon1, tc.lat2, tc.lon2)
			if math.Abs(got-tc.want) > 0.01 {
				t.Fatalf("DistanceKm = %.4f, want %.4f", got, tc.want)
			}
			if back := DistanceKm(tc.lat2, tc.lon2, tc.lat1, tc.lon1); math.Abs(back-got) > 1e-9 {
				t.Fatalf("not symmetric: %v vs %v", got, back)
			}
			if self := DistanceKm(tc.lat1, tc.lon1, tc.lat1, tc.lon1); self != 0 {
				t.Fatalf("distance to self = %v", self)
			}
		})
	}
}

func FuzzDistanceKm(f *testing.F) {
	f.Add(51.5074, -0.1278, 48.8566, 2.3522)
	f.Add(0.0, 0.0, 0.0, 180.0)
	f.Add(90.0, 0.0, -90.0, 0.0)
	f.Add(22.32, 114.17, -33.8688, 151.2093)
	f.Fuzz(func(t *testing.T, lat1, lon1, lat2, lon2 float64) {
		if !validCoord(lat1, lon1) || !validCoord(lat2, lon2) {
			return
		}
		d := DistanceKm(lat1, lon1, lat2, lon2)
		if math.IsNaN(d) || math.IsInf(d, 0) || d < 0 || d > math.Pi*EarthRadiusKm+1e-9 {
			t.Fatalf("DistanceKm(%v,%v,%v,%v) = %v", lat1, lon1, lat2, lon2, d)
		}
		if back := DistanceKm(lat2, lon2, lat1, lon1); math.Abs(back-d) > 1e-6 {
			t.Fatalf("asymmetric: %v vs %v", d, back)
		}
		if DistanceKm(lat1, lon1, lat1, lon1) != 0 {
			t.Fatal("nonzero distance to self")
		}
	})
}

func TestConcurrentUpdateAndRead(t *testing.T) {
	tab := newTestTable(t, "hk-1", DefaultOptions(), demoNodes())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		ns := demoNodes()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ns[i%3].Alive = !ns[i%3].Alive
			ns[(i+1)%3].Load = float64(i%10) / 10
			tab.Update(ns)
		}
	}()
	for range 2000 {
		for _, r := range tab.Rank(london.lat, london.lon) {
			if !r.Alive {
				t.Error("dead node ranked")
			}
		}
		_, _ = tab.Nearest(sydney.lat, sydney.lon, "hk-1")
		_, _ = Policy{Mode: ModeRedirect, ThresholdKm: 1000}.Decide(tab, "hk-1", london.lat, london.lon, true, false)
	}
	close(stop)
	wg.Wait()
}

type staticSource []Node

func (s staticSource) Nodes() []Node { return append([]Node(nil), s...) }

var _ MemberSource = staticSource(nil)

func TestUpdateFrom(t *testing.T) {
	tab := NewTable("hk-1", Options{})
	if _, ok := tab.Nearest(0, 0, ""); ok {
		t.Fatal("empty table must have no nearest")
	}
	tab.UpdateFrom(staticSource(demoNodes()))
	if got := len(tab.Nodes()); got != 3 {
		t.Fatalf("Nodes() = %d, want 3", got)
	}
}

func BenchmarkNearest(b *testing.B) {
	tab := newTestTable(b, "hk-1", DefaultOptions(), demoNodes())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = tab.Nearest(london.lat, london.lon, "hk-1")
	}
}

func BenchmarkDecide(b *testing.B) {
	tab := newTestTable(b, "hk-1", DefaultOptions(), demoNodes())
	p := Policy{Mode: ModeRedirect, ThresholdKm: 2000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = p.Decide(tab, "hk-1", london.lat, london.lon, true, false)
		}
	})
}

func BenchmarkRank(b *testing.B) {
	tab := newTestTable(b, "hk-1", DefaultOptions(), demoNodes())
	buf := make([]Ranked, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		buf = tab.AppendRank(buf[:0], london.lat, london.lon)
	}
}
