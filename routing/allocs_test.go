//go:build !race

package routing

import "testing"

func TestHotPathAllocs(t *testing.T) {
	tab := newTestTable(t, "hk-1", DefaultOptions(), demoNodes())
	p := Policy{Mode: ModeRedirect, ThresholdKm: 2000}
	buf := make([]Ranked, 0, 8)
	for name, fn := range map[string]func(){
		"Nearest":    func() { _, _ = tab.Nearest(london.lat, london.lon, "hk-1") },
		"Decide":     func() { _, _ = p.Decide(tab, "hk-1", london.lat, london.lon, true, false) },
		"AppendRank": func() { buf = tab.AppendRank(buf[:0], london.lat, london.lon) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s allocs = %v, want 0", name, n)
		}
	}
}
