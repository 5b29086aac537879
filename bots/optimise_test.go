package bots

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/refrouter/refrouter/internal/ascii"
)

// The tests here check that the prefilter (scan) and the verdict cache
// (Match) give the verdict of the reference automaton (run) over the whole
// string, itself checked against refMatch, the slow obvious reference.

// agree fails t unless every way of matching s with m gives want.
func agree(t *testing.T, m *Matcher, s []byte, want bool) {
	t.Helper()
	if got := m.run(s); got != want {
		t.Fatalf("run(%q) = %v, want %v", s, got, want)
	}
	if got := m.scan(s); got != want {
		t.Fatalf("scan(%q) = %v, want %v", s, got, want)
	}
	for i := range 2 { // a miss or a hit, then a hit
		if got := m.Match(s); got != want {
			t.Fatalf("Match(%q) call %d = %v, want %v", s, i+1, got, want)
		}
	}
}

func TestOptimisedAgreesOnTestUAs(t *testing.T) {
	m := defaultMatcher
	var uas []string
	for _, tt := range uaTests {
		uas = append(uas, tt.ua)
	}
	for _, bu := range benchUAs {
		uas = append(uas, bu.ua)
	}
	uas = append(uas, humanSample[:]...)
	for _, ua := range uas {
		want := refIsBot(ua, DefaultPatterns(), DefaultExceptions())
		if ua == "" {
			if !IsBot(nil) || !IsBot([]byte{}) {
				t.Fatal("IsBot(empty) = false")
			}
			continue
		}
		agree(t, m, []byte(ua), want)
		if got := IsBot([]byte(ua)); got != want {
			t.Fatalf("IsBot(%q) = %v, want %v", ua, got, want)
		}
	}
	for _, ua := range humanSample {
		if IsBot([]byte(ua)) {
			t.Errorf("human sample %q classed as a bot", ua)
		}
	}
}

// uaFragments are pieces of real user agents, for generated ones.
func uaFragments() []string {
	var frags []string
	add := func(ua string) {
		frags = append(frags, strings.FieldsFunc(ua, func(r rune) bool { return r == ' ' || r == ';' })...)
	}
	for _, tt := range uaTests {
		add(tt.ua)
	}
	for _, ua := range humanSample {
		add(ua)
	}
	return frags
}

// randomCase changes the case of ASCII letters at random.
func randomCase(r *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if r.IntN(2) == 0 {
			b[i] = ascii.Upper(c)
		} else {
			b[i] = ascii.Lower(c)
		}
	}
	return string(b)
}

// generatedUA mixes real fragments with patterns, exceptions, pieces of
// them and odd bytes, at random positions and in random case.
func generatedUA(r *rand.Rand, frags, pats, excs []string) []byte {
	var b []byte
	n := r.IntN(25)
	for range n {
		switch r.IntN(12) {
		case 0: // a whole pattern
			b = append(b, randomCase(r, pats[r.IntN(len(pats))])...)
		case 1: // an exception, perhaps joined to a pattern
			b = append(b, randomCase(r, excs[r.IntN(len(excs))])...)
			if r.IntN(2) == 0 {
				b = append(b, randomCase(r, pats[r.IntN(len(pats))])...)
			}
		case 2: // a near miss: a pattern cut short or split
			p := pats[r.IntN(len(pats))]
			cut := r.IntN(len(p))
			b = append(b, randomCase(r, p[:cut])...)
			if r.IntN(2) == 0 {
				b = append(b, ' ')
				b = append(b, randomCase(r, p[cut:])...)
			}
		case 3: // a pattern without its first byte
			p := pats[r.IntN(len(pats))]
			b = append(b, randomCase(r, p[1:])...)
		case 4: // odd bytes
			for range r.IntN(4) + 1 {
				b = append(b, byte(r.IntN(256)))
			}
		default:
			b = append(b, frags[r.IntN(len(frags))]...)
		}
		if r.IntN(3) > 0 {
			b = append(b, " ;/()"[r.IntN(5)])
		}
	}
	return b
}

func TestOptimisedAgreesOnGeneratedUAs(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	frags := uaFragments()
	pats, excs := DefaultPatterns(), DefaultExceptions()
	m := defaultMatcher
	small, err := newMatcher(pats, excs, humanSample[:], 4) // constant evictions
	if err != nil {
		t.Fatal(err)
	}
	n := 30000
	if testing.Short() {
		n = 3000
	}
	bots := 0
	for i := range n {
		ua := generatedUA(r, frags, pats, excs)
		want := m.run(ua)
		if i%8 == 0 && len(ua) > 0 {
			if ref := refMatch(string(ua), pats, excs); ref != want {
				t.Fatalf("run(%q) = %v, reference %v", ua, want, ref)
			}
		}
		if want {
			bots++
		}
		agree(t, m, ua, want)
		agree(t, small, ua, want)
		if len(ua) > 0 && IsBot(ua) != want {
			t.Fatalf("IsBot(%q) != %v", ua, want)
		}
	}
	// The corpus must exercise both verdicts.
	if bots < n/10 || bots > n*9/10 {
		t.Fatalf("%d of %d generated user agents are bots", bots, n)
	}
}

// randomStrings returns n strings of up to maxLen bytes from alpha.
func randomStrings(r *rand.Rand, n, minLen, maxLen int, alpha string) []string {
	out := make([]string, n)
	for i := range out {
		b := make([]byte, minLen+r.IntN(maxLen-minLen+1))
		for j := range b {
			b[j] = alpha[r.IntN(len(alpha))]
		}
		out[i] = string(b)
	}
	return out
}

// TestScanAgreesOnRandomSets checks the prefilter windows on random pattern
// sets (one-byte, overlapping and long patterns, exceptions that mask them)
// and random pair choices, over long strings of a small alphabet, where hits
// are many and windows join, restart and mask across their edges.
func TestScanAgreesOnRandomSets(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const alpha = "abcdAB-"
	sets := 300
	if testing.Short() {
		sets = 30
	}
	for set := range sets {
		pats := randomStrings(r, 1+r.IntN(5), 1, 2+r.IntN(12), alpha)
		excs := randomStrings(r, r.IntN(4), 2, 2+r.IntN(14), alpha)
		// Exceptions that end with a pattern, so that they mask.
		for i := range excs {
			if r.IntN(2) == 0 {
				excs[i] += pats[r.IntN(len(pats))]
			}
		}
		if set%10 == 0 { // one-byte patterns only
			pats = randomStrings(r, 1+r.IntN(2), 1, 1, alpha)
			excs = nil
		}
		sample := randomStrings(r, r.IntN(5), 0, 40, alpha)
		m, err := newMatcher(pats, excs, sample, 4)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			s := randomStrings(r, 1, 0, 120, alpha+"xyz xyz")[0]
			want := m.run([]byte(s))
			if ref := refMatch(s, pats, excs); ref != want {
				t.Fatalf("set %d %q / %q: run(%q) = %v, reference %v", set, pats, excs, s, want, ref)
			}
			if got := m.scan([]byte(s)); got != want {
				t.Fatalf("set %d %q / %q: scan(%q) = %v, want %v", set, pats, excs, s, got, want)
			}
			if got := m.Match([]byte(s)); got != want {
				t.Fatalf("set %d %q / %q: Match(%q) = %v, want %v", set, pats, excs, s, got, want)
			}
		}
	}
}

// TestScanOneBytePatterns covers the edges of the windows with patterns of
// one byte (whose pairs are the bytes around them) at every position.
func TestScanOneBytePatterns(t *testing.T) {
	for _, set := range []struct{ pats, excs []string }{
		{[]string{"a"}, nil},
		{[]string{"a", "bc"}, nil},
		{[]string{"a"}, []string{"xa"}},
		{[]string{"a", "z"}, []string{"xxxxxxxxxxa"}},
	} {
		m, err := newMatcher(set.pats, set.excs, nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		for n := 1; n <= 40; n++ {
			for at := range n {
				for _, fill := range []byte{'x', 'y'} {
					b := bytes.Repeat([]byte{fill}, n)
					b[at] = 'A'
					agree(t, m, b, refMatch(string(b), set.pats, set.excs))
				}
			}
		}
	}
}

// TestScanWindowEdges places two keywords (patterns or exceptions, with
// few and known prefilter pairs) at every pair of positions in a filler, so
// that hits are sparse and patterns fall at every offset from the edges of
// the windows.
func TestScanWindowEdges(t *testing.T) {
	for _, set := range []struct{ pats, excs []string }{
		{[]string{"qr", "abcdefghijklmnop"}, nil},
		{[]string{"qr", "abcdefghijklmnop"}, []string{"zabcdefghijklmnop"}},
		{[]string{"q", "abcdefgh", "hij"}, []string{"bcdefghij", "zq"}},
	} {
		m, err := newMatcher(set.pats, set.excs, nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		words := append(append([]string(nil), set.pats...), set.excs...)
		for _, w1 := range words {
			for _, w2 := range words {
				for p1 := range 40 {
					for p2 := range 40 {
						b := bytes.Repeat([]byte{'.'}, 64)
						copy(b[p1:], w1)
						copy(b[p2:], w2)
						for _, n := range []int{p2 + len(w2), len(b)} {
							agree(t, m, b[:n], refMatch(string(b[:n]), set.pats, set.excs))
						}
					}
				}
			}
		}
	}
}

// TestPairTableCoversPatterns checks the property scan relies on: every
// case variant of every pattern holds a pair of the table.
func TestPairTableCoversPatterns(t *testing.T) {
	m := defaultMatcher
	r := rand.New(rand.NewPCG(31, 32))
	for _, p := range DefaultPatterns() {
		for range 20 {
			v := []byte(randomCase(r, p))
			found := false
			for i := 0; i+1 < len(v); i++ {
				found = found || m.pairs[le16(v[i:])] != 0
			}
			if !found {
				t.Fatalf("no prefilter pair in %q", v)
			}
		}
	}
}

func TestCacheEntries(t *testing.T) {
	m, err := newMatcher([]string{"bot"}, nil, nil, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.cached(0); ok {
		t.Fatal("empty cache hit for hash 0")
	}
	if _, ok := m.cached(5); ok {
		t.Fatal("empty cache hit")
	}
	m.remember(0, false)
	if v, ok := m.cached(0); !ok || v {
		t.Fatalf("cached(0) = %v, %v; want false, true", v, ok)
	}
	const h = 0xdeadbeef_00000007
	m.remember(h, true)
	if v, ok := m.cached(h); !ok || !v {
		t.Fatalf("cached(h) = %v, %v; want true, true", v, ok)
	}
	// Same slot, other hashes: misses, whichever bit differs.
	for bit := 4; bit < 64; bit++ {
		if _, ok := m.cached(h ^ 1<<bit); ok {
			t.Fatalf("hash differing in bit %d hit", bit)
		}
	}
	// The verdict bit is not hash: false then true for one hash.
	m.remember(h, false)
	if v, ok := m.cached(h); !ok || v {
		t.Fatalf("after re-insert cached(h) = %v, %v; want false, true", v, ok)
	}
	// A later insert into the slot evicts.
	m.remember(h^1<<40, true)
	if _, ok := m.cached(h); ok {
		t.Fatal("evicted entry hit")
	}
	// Each Matcher has its own seed and table.
	m2, _ := newMatcher([]string{"bot"}, nil, nil, 16)
	if m2.seed == m.seed || &m2.slots[0] == &m.slots[0] {
		t.Fatal("matchers share cache state")
	}
	for _, n := range []int{0, 2, 3, 12} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("cache of %d slots accepted", n)
				}
			}()
			new(Matcher).initCache(n)
		}()
	}
}

// TestCacheKeepsVerdicts checks that cached verdicts are those of their own
// user agent, with many user agents sharing few slots.
func TestCacheKeepsVerdicts(t *testing.T) {
	m, err := newMatcher(DefaultPatterns(), DefaultExceptions(), humanSample[:], 8)
	if err != nil {
		t.Fatal(err)
	}
	var uas [][]byte
	for i := range 64 {
		ua := fmt.Sprintf("Mozilla/5.0 (iPhone; CPU iPhone OS 17_%d like Mac OS X) Mobile", i)
		if i%3 == 0 {
			ua += " Googlebot"
		}
		uas = append(uas, []byte(ua))
	}
	evicted := 0
	for round := range 20 {
		for i, ua := range uas {
			h := maphash.Bytes(m.seed, ua)
			if _, ok := m.cached(h); !ok {
				evicted++
			}
			if got := m.Match(ua); got != (i%3 == 0) {
				t.Fatalf("round %d: Match(%q) = %v", round, ua, got)
			}
			if v, ok := m.cached(h); !ok || v != (i%3 == 0) {
				t.Fatalf("round %d: after Match(%q), cached = %v, %v", round, ua, v, ok)
			}
			if got := m.Match(ua); got != (i%3 == 0) {
				t.Fatalf("round %d: second Match(%q) = %v", round, ua, got)
			}
		}
	}
	if evicted == 0 {
		t.Fatal("64 user agents in 8 slots never evicted one another")
	}
}

// TestConcurrentMatch runs Match from many goroutines on shared slots (run
// it with -race): every verdict must be right whatever the interleaving.
func TestConcurrentMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	frags := uaFragments()
	pats, excs := DefaultPatterns(), DefaultExceptions()
	small, err := newMatcher(pats, excs, humanSample[:], 4)
	if err != nil {
		t.Fatal(err)
	}
	uas := make([][]byte, 200)
	want := make([]bool, len(uas))
	for i := range uas {
		for len(uas[i]) == 0 {
			uas[i] = generatedUA(r, frags, pats, excs)
		}
		want[i] = defaultMatcher.run(uas[i])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for n := range 3000 {
				i := (n*7 + g*13) % len(uas)
				if got := IsBot(uas[i]); got != want[i] {
					errs <- fmt.Sprintf("IsBot(%q) = %v", uas[i], got)
					return
				}
				if got := small.Match(uas[i]); got != want[i] {
					errs <- fmt.Sprintf("small.Match(%q) = %v", uas[i], got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// refMatchBytes is refMatch for any bytes in patterns and s (refMatch maps
// non-ASCII bytes of s to 0x01 and folds patterns as Unicode).
func refMatchBytes(s string, pats, excs []string) bool {
	s = ascii.LowerString(s)
	for end := 1; end <= len(s); end++ {
		longestExc := 0
		for _, e := range excs {
			if strings.HasSuffix(s[:end], ascii.LowerString(e)) {
				longestExc = max(longestExc, len(e))
			}
		}
		for _, p := range pats {
			if len(p) > longestExc && strings.HasSuffix(s[:end], ascii.LowerString(p)) {
				return true
			}
		}
	}
	return false
}

// FuzzMatcher compares the matcher (run, scan, Match) with refMatchBytes on
// fuzzed pattern sets (comma-separated) and strings; the string is also
// the sample that guides the choice of prefilter pairs.
func FuzzMatcher(f *testing.F) {
	f.Add("bot,spider", "cubot", "CUBOT x spider")
	f.Add("a,bc", "xbc", "xxbcxabc")
	f.Add("thirdlandingpage", "", "thirdlandingpag thirdLandingPage")
	f.Fuzz(func(t *testing.T, pats, excs, s string) {
		if len(pats) > 200 || len(excs) > 200 || len(s) > 1000 {
			return
		}
		split := func(x string) []string {
			if x == "" {
				return nil
			}
			return strings.Split(x, ",")
		}
		m, err := newMatcher(split(pats), split(excs), []string{s}, 4)
		if err != nil {
			return
		}
		want := refMatchBytes(s, split(pats), split(excs))
		agree(t, m, []byte(s), want)
	})
}
