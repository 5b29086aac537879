package bots

import (
	"hash/maphash"
	"testing"
)

// benchUAs are the user agents of the benchmarks.
var benchUAs = []struct {
	name string
	ua   string
	bot  bool
}{
	{"short", "Mozilla/5.0 (iPhone) Mobile", false},
	{"iPhone135", typicalUA, false},
	{"AndroidChromeLong", "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/460.0.0.48.109;IABMV/1;]", false},
	{"bot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true},
}

// BenchmarkIsBotUAs measures IsBot on each benchmark user agent:
//
//	hit: the verdict is in the cache (the common case in real traffic);
//	miss: the cache slot is emptied before each call (hash, scan, insert);
//	uncached: the prefilter and automaton only;
//	automaton: the reference automaton alone, as before the prefilter and
//	cache (it now stops at the first match, which helps bots only).
func BenchmarkIsBotUAs(b *testing.B) {
	m := defaultMatcher
	for _, bu := range benchUAs {
		ua := []byte(bu.ua)
		b.Run(bu.name+"/hit", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if IsBot(ua) != bu.bot {
					b.Fatal("wrong verdict")
				}
			}
		})
		b.Run(bu.name+"/miss", func(b *testing.B) {
			slot := &m.slots[maphash.Bytes(m.seed, ua)&m.mask]
			b.ReportAllocs()
			for b.Loop() {
				slot.Store(0)
				if IsBot(ua) != bu.bot {
					b.Fatal("wrong verdict")
				}
			}
		})
		b.Run(bu.name+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if m.scan(ua) != bu.bot {
					b.Fatal("wrong verdict")
				}
			}
		})
		b.Run(bu.name+"/automaton", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if m.run(ua) != bu.bot {
					b.Fatal("wrong verdict")
				}
			}
		})
	}
}

// BenchmarkScanHumanSample is the uncached cost averaged over humanSample.
func BenchmarkScanHumanSample(b *testing.B) {
	m := defaultMatcher
	uas := make([][]byte, len(humanSample))
	n := 0
	for i, s := range humanSample {
		uas[i] = []byte(s)
		n += len(s)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, ua := range uas {
			if m.scan(ua) {
				b.Fatal("human classed as bot")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(uas)), "ns/ua")
	b.ReportMetric(float64(n)/float64(len(uas)), "bytes/ua")
}
