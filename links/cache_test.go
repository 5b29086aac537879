package links

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// cacheTestKeys has one generation per residue mod 4; gen 4 retires an hour
// after testNow.
func cacheTestKeys() []MasterKey {
	return []MasterKey{
		{Gen: 4, Key: testKey(4, ""), RetireAt: testNow.Add(time.Hour)},
		{Gen: 5, Key: testKey(5, "")},
		{Gen: 6, Key: testKey(6, "")},
		{Gen: 7, Key: testKey(7, "")},
	}
}

// newKeyringCache builds a keyring of keys issuing with current, with a code
// cache of slots slots, or none when slots is 0.
func newKeyringCache(tb testing.TB, keys []MasterKey, current uint8, slots int) *Keyring {
	tb.Helper()
	k, err := NewKeyring(keys, current)
	if err != nil {
		tb.Fatal(err)
	}
	k.cache = nil
	if slots > 0 {
		k.cache = newCodeCache(slots)
	}
	return k
}

// cachedCodes lists the codes in k's code cache.
func cachedCodes(k *Keyring) []string {
	var out []string
	for i := range k.cache.slots {
		sl := &k.cache.slots[i]
		if seq := sl.seq.Load(); seq != 0 && seq&1 == 0 {
			var raw [CodeLen]byte
			binary.LittleEndian.PutUint64(raw[:8], sl.raw[0].Load())
			binary.LittleEndian.PutUint64(raw[8:], sl.raw[1].Load())
			out = append(out, string(raw[:]))
		}
	}
	return out
}

// isCached reports whether k's code cache holds code.
func isCached(k *Keyring, code []byte) bool {
	_, _, ok := k.cache.lookup(code)
	return ok
}

// slotSeq returns the sequence number of code's slot in k's code cache, which
// changes with every write to the slot.
func slotSeq(k *Keyring, code []byte) uint64 {
	sl, _, _ := k.cache.lookup(code)
	return sl.seq.Load()
}

// sameVerification reports whether a and b, from two keyrings of the same
// keys, record the same verification.
func sameVerification(a, b VerifiedCode) bool {
	if a.code != b.code || a.tag != b.tag || (a.s == nil) != (b.s == nil) || (a.ck == nil) != (b.ck == nil) {
		return false
	}
	return a.s == nil || a.s.gen == b.s.gen
}

// genuineCodes issues n random codes, spread over the generations of keys.
func genuineCodes(tb testing.TB, r *rand.Rand, keys []MasterKey, n int) [][]byte {
	tb.Helper()
	issuers := make([]*Keyring, len(keys))
	for i, mk := range keys {
		issuers[i] = newKeyringCache(tb, []MasterKey{mk}, mk.Gen, 0)
	}
	codes := make([][]byte, n)
	for i := range codes {
		c := Code{Campaign: uint16(r.IntN(8)), Inviter: r.Uint32(), Variant: uint8(r.IntN(8))}
		if i%3 == 0 {
			c.Campaign = uint16(r.Uint32())
		}
		codes[i] = mustCode(tb, issuers[r.IntN(len(issuers))], c)
	}
	return codes
}

// mutations returns every single-character change of code.
func mutations(code []byte) [][]byte {
	var out [][]byte
	for i := range code {
		for j := 0; j < len(alphabet); j++ {
			if alphabet[j] != code[i] {
				m := bytes.Clone(code)
				m[i] = alphabet[j]
				out = append(out, m)
			}
		}
	}
	return out
}

func TestVerifyCodeCachedMatchesUncached(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	keys := cacheTestKeys()
	plain := newKeyringCache(t, keys, 7, 0)
	cached := []*Keyring{
		newKeyringCache(t, keys, 7, codeCacheSlots),
		newKeyringCache(t, keys, 7, 16), // constant eviction
		newKeyringCache(t, keys, 7, 1),
	}
	genuine := genuineCodes(t, r, keys, 3000)
	inputs := append([][]byte(nil), genuine...)
	for _, g := range genuine[:20] {
		inputs = append(inputs, mutations(g)...)
	}
	for range 2000 {
		b := make([]byte, CodeLen)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		inputs = append(inputs, b)
	}
	inputs = append(inputs, nil, []byte("0000000000000000"), []byte("zzzzzzzzzzzzzzzz"), []byte("000000000000000-"), genuine[0][:15], append(bytes.Clone(genuine[0]), '0'))
	// Other master keys of the same generations: genuine-looking, forged here.
	inputs = append(inputs, genuineCodes(t, r, []MasterKey{{Gen: 5, Key: testKey(5, "other")}, {Gen: 0, Key: testKey(0, "")}}, 200)...)

	retire := keys[0].RetireAt
	nows := []time.Time{testNow, retire.Add(-time.Nanosecond), retire, retire.Add(time.Hour)}
	var genuineSeen, retiredSeen int
	for i := 0; i < 60000; i++ {
		var in []byte
		if i%2 == 0 {
			in = genuine[r.IntN(64)] // hot codes: hits
		} else {
			in = inputs[r.IntN(len(inputs))]
		}
		now := nows[r.IntN(len(nows))]
		want, wantErr := plain.VerifyCode(in, now)
		wantCode, wantCodeErr := plain.Verify(in, now)
		if wantCode != want.Code() || wantCodeErr != wantErr {
			t.Fatalf("uncached Verify(%q) = %+v, %v; VerifyCode = %+v, %v", in, wantCode, wantCodeErr, want.Code(), wantErr)
		}
		switch wantErr {
		case nil:
			genuineSeen++
		case ErrRetired:
			retiredSeen++
		}
		for j, k := range cached {
			got, err := k.VerifyCode(in, now)
			if err != wantErr || !sameVerification(got, want) {
				t.Fatalf("keyring %d: VerifyCode(%q, %v) = %+v, %v; uncached %+v, %v", j, in, now, got, err, want, wantErr)
			}
			gotCode, err := k.Verify(in, now)
			if err != wantErr || gotCode != want.Code() {
				t.Fatalf("keyring %d: Verify(%q, %v) = %+v, %v; uncached %+v, %v", j, in, now, gotCode, err, want.Code(), wantErr)
			}
		}
	}
	if genuineSeen < 1000 || retiredSeen < 100 {
		t.Fatalf("only %d genuine and %d retired verifications exercised", genuineSeen, retiredSeen)
	}
}

func TestVerifyCodeHitIsServedFromCache(t *testing.T) {
	k := newTestKeyring(t, 1, 1)
	code := mustCode(t, k, Code{Campaign: 3, Inviter: 4})
	if isCached(k, code) {
		t.Fatal("code cached before any verification")
	}
	want, err := k.VerifyCode(code, testNow)
	if err != nil {
		t.Fatal(err)
	}
	sl, v, ok := k.cache.lookup(code)
	if !ok || v != makeValue(want.code.n53(), want.tag) {
		t.Fatalf("cache after a genuine verification: %v, %v; want %+v", v, ok, want)
	}
	// Poison the entry: a hit must return it without re-verifying.
	poisoned := want.code
	poisoned.Inviter = 99
	k.cache.insert(sl, code, makeValue(poisoned.n53(), want.tag))
	seq := sl.seq.Load()
	if got, err := k.Verify(code, testNow); err != nil || got != poisoned {
		t.Fatalf("Verify after poisoning = %+v, %v; want the cached %+v", got, err, poisoned)
	}
	if sl.seq.Load() != seq {
		t.Fatal("a hit rewrote the slot")
	}
}

func TestCodeCacheSlotStates(t *testing.T) {
	c := newCodeCache(1)
	code := []byte("0123456789ABCDEF")
	v := value{hi: 1, lo: 2}
	sl, _, ok := c.lookup(code)
	if ok {
		t.Fatal("hit in an empty cache")
	}
	// An empty slot holds zeros: 16 NUL bytes must not match it.
	if _, _, ok := c.lookup(make([]byte, CodeLen)); ok {
		t.Fatal("NUL code hit an empty slot")
	}
	c.insert(sl, code, v)
	if _, got, ok := c.lookup(code); !ok || got != v {
		t.Fatalf("lookup after insert = %v, %v", got, ok)
	}
	// A writer in the slot: readers miss, other writers give up.
	seq := sl.seq.Load()
	sl.seq.Store(seq + 1)
	if _, _, ok := c.lookup(code); ok {
		t.Fatal("hit while a writer holds the slot")
	}
	c.insert(sl, []byte("ZZZZZZZZZZZZZZZZ"), value{})
	if sl.seq.Load() != seq+1 || sl.raw[0].Load() != binary.LittleEndian.Uint64(code) {
		t.Fatal("insert entered a slot held by another writer")
	}
	sl.seq.Store(seq + 2)
	if _, got, ok := c.lookup(code); !ok || got != v {
		t.Fatalf("lookup after the writer left = %v, %v", got, ok)
	}
	// Replacement.
	other := []byte("ZZZZZZZZZZZZZZZZ")
	c.insert(sl, other, value{hi: 3, lo: 4})
	if _, _, ok := c.lookup(code); ok {
		t.Fatal("replaced code still hits")
	}
	if _, got, ok := c.lookup(other); !ok || got != (value{hi: 3, lo: 4}) {
		t.Fatalf("lookup of the replacement = %v, %v", got, ok)
	}
	for i := range CodeLen {
		m := bytes.Clone(other)
		m[i] ^= 0x20
		if _, _, ok := c.lookup(m); ok {
			t.Fatalf("%q hit the entry of %q", m, other)
		}
	}
}

func TestVerifyCodeCacheRetirement(t *testing.T) {
	keys := cacheTestKeys()
	retire := keys[0].RetireAt
	issuer := newKeyringCache(t, keys[:1], 4, 0)
	want := Code{Campaign: 1, Inviter: 2, Variant: 3, Gen: 4}
	code := mustCode(t, issuer, want)

	t.Run("cached before retirement", func(t *testing.T) {
		k := newKeyringCache(t, keys, 7, codeCacheSlots)
		if got, err := k.Verify(code, retire.Add(-time.Nanosecond)); err != nil || got != want {
			t.Fatalf("before retire: %+v, %v", got, err)
		}
		if !isCached(k, code) {
			t.Fatal("genuine code not cached")
		}
		seq := slotSeq(k, code)
		for _, now := range []time.Time{retire, retire.Add(time.Hour)} {
			v, err := k.VerifyCode(code, now)
			if err != ErrRetired || v.Code() != want {
				t.Fatalf("hit at %v: %+v, %v; want %+v, ErrRetired", now, v.Code(), err, want)
			}
			if got, err := k.Verify(code, now); err != ErrRetired || got != want {
				t.Fatalf("Verify hit at %v: %+v, %v; want %+v, ErrRetired", now, got, err, want)
			}
		}
		if got, err := k.Verify(code, retire.Add(-time.Nanosecond)); err != nil || got != want {
			t.Fatalf("before retire again: %+v, %v", got, err)
		}
		if slotSeq(k, code) != seq {
			t.Fatal("hits rewrote the slot")
		}
	})
	t.Run("first seen after retirement", func(t *testing.T) {
		k := newKeyringCache(t, keys, 7, codeCacheSlots)
		for i := 0; i < 3; i++ {
			if got, err := k.Verify(code, retire); err != ErrRetired || got != want {
				t.Fatalf("call %d: %+v, %v; want ErrRetired", i, got, err)
			}
			if !isCached(k, code) {
				t.Fatalf("call %d: genuine retired code not cached", i)
			}
		}
	})
}

func TestForgedCodesNeverCached(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	keys := cacheTestKeys()
	k := newKeyringCache(t, keys, 7, codeCacheSlots)
	reject := func(in []byte) {
		t.Helper()
		if _, err := k.Verify(in, testNow); err != ErrForged && err != ErrMalformed {
			t.Fatalf("Verify(%q) = %v, want ErrForged or ErrMalformed", in, err)
		}
	}
	// Random values under random tags.
	for range 20000 {
		v := value{hi: r.Uint64() >> (64 - hiBits), lo: r.Uint64()}
		reject(appendValue(nil, v))
	}
	// Right fields, another master key of the same generation.
	reject(mustCode(t, newKeyringCache(t, []MasterKey{{Gen: 5, Key: testKey(5, "other")}}, 5, 0), Code{Campaign: 1, Inviter: 2}))
	// Codes of a generation not in the keyring (gen 0 is shadowed by gen 4).
	reject(mustCode(t, newTestKeyring(t, 0, 0), Code{Campaign: 1, Inviter: 2}))
	// Single-character changes of genuine codes the keyring never saw.
	for _, g := range genuineCodes(t, r, keys, 8) {
		for _, m := range mutations(g) {
			reject(m)
		}
	}
	if got := cachedCodes(k); len(got) != 0 {
		t.Fatalf("%d codes cached after forged and malformed codes only: %q", len(got), got)
	}
	code := genuineCodes(t, r, keys[1:], 1)[0]
	if _, err := k.Verify(code, testNow); err != nil {
		t.Fatal(err)
	}
	if got := cachedCodes(k); len(got) != 1 || got[0] != string(code) {
		t.Fatalf("cached %q after one genuine code %q", got, code)
	}
}

func TestSingleCharChangeRejectedCached(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	keys := cacheTestKeys()
	plain := newKeyringCache(t, keys, 7, 0)
	for n, code := range genuineCodes(t, r, keys, 6) {
		// Even a one-slot cache: every mutation maps to the genuine code's slot.
		for _, slots := range []int{codeCacheSlots, 1} {
			t.Run(fmt.Sprintf("%d/%d slots", n, slots), func(t *testing.T) {
				warm := newKeyringCache(t, keys, 7, slots) // genuine code cached
				cold := newKeyringCache(t, keys, 7, slots) // never sees it
				want, err := warm.VerifyCode(code, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if !isCached(warm, code) {
					t.Fatal("genuine code not cached")
				}
				seq := slotSeq(warm, code)
				for _, m := range mutations(code) {
					_, wantErr := plain.Verify(m, testNow)
					if wantErr != ErrForged && wantErr != ErrMalformed {
						t.Fatalf("uncached Verify(%q) (from %q) = %v", m, code, wantErr)
					}
					for _, k := range []*Keyring{warm, cold} {
						if got, err := k.Verify(m, testNow); err != wantErr || got != (Code{}) {
							t.Fatalf("Verify(%q) (from %q) = %+v, %v; want %v", m, code, got, err, wantErr)
						}
					}
				}
				if slotSeq(warm, code) != seq || !isCached(warm, code) {
					t.Fatal("forged codes wrote to the genuine code's slot")
				}
				if got := cachedCodes(cold); len(got) != 0 {
					t.Fatalf("forged codes cached: %q", got)
				}
				if got, err := warm.VerifyCode(code, testNow); err != nil || !sameVerification(got, want) {
					t.Fatalf("genuine code after its mutations: %+v, %v", got, err)
				}
			})
		}
	}
}

func TestVerifyCodeCacheConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	keys := cacheTestKeys()
	plain := newKeyringCache(t, keys, 7, 0)
	genuine := genuineCodes(t, r, keys, 256)
	inputs := append([][]byte(nil), genuine...)
	inputs = append(inputs, mutations(genuine[0])[:200]...)
	inputs = append(inputs, []byte("zzzzzzzzzzzzzzzz"), genuine[1][:15])
	retire := keys[0].RetireAt
	nows := []time.Time{testNow, retire}
	type result struct {
		v   VerifiedCode
		err error
		tok []byte
	}
	want := make([][]result, len(nows))
	for i, now := range nows {
		want[i] = make([]result, len(inputs))
		for j, in := range inputs {
			v, err := plain.VerifyCode(in, now)
			res := result{v: v, err: err}
			if err == nil || err == ErrRetired {
				res.tok = mustClick(t, plain, Click{Code: v.Code(), ClickID: uint64(j), At: now, Node: "hk-1"})
			}
			want[i][j] = res
		}
	}
	for _, slots := range []int{codeCacheSlots, 8, 1} {
		t.Run(fmt.Sprintf("%d slots", slots), func(t *testing.T) {
			k := newKeyringCache(t, keys, 7, slots)
			const workers = 16
			var wg sync.WaitGroup
			errc := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(w), 19))
					buf := make([]byte, 0, MaxClickTokenLen)
					for range 3000 {
						i, j := r.IntN(len(nows)), r.IntN(len(inputs))
						if j&1 == 0 && j < len(genuine) {
							j &= 15 // hot codes
						}
						wr := want[i][j]
						v, err := k.VerifyCode(inputs[j], nows[i])
						if err != wr.err || !sameVerification(v, wr.v) {
							errc <- fmt.Errorf("VerifyCode(%q, %v) = %+v, %v; want %+v, %v", inputs[j], nows[i], v, err, wr.v, wr.err)
							return
						}
						if wr.tok == nil {
							continue
						}
						buf, err = k.AppendClickTokenFor(buf[:0], v, Click{Code: v.Code(), ClickID: uint64(j), At: nows[i], Node: "hk-1"})
						if err != nil || !bytes.Equal(buf, wr.tok) {
							errc <- fmt.Errorf("AppendClickTokenFor for %q = %q, %v; want %q", inputs[j], buf, err, wr.tok)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			for _, c := range cachedCodes(k) {
				if _, err := plain.Verify([]byte(c), testNow); err != nil {
					t.Fatalf("cached code %q does not verify: %v", c, err)
				}
			}
		})
	}
}

func TestAppendClickTokenFor(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	keys := cacheTestKeys()
	k := newKeyringCache(t, keys, 7, codeCacheSlots)
	twin := newKeyringCache(t, keys, 7, codeCacheSlots) // same keys, other keyring
	otherKeys := cacheTestKeys()
	otherKeys[1].Key = testKey(5, "other")
	other := newKeyringCache(t, otherKeys, 7, codeCacheSlots)
	retire := keys[0].RetireAt

	codes := genuineCodes(t, r, keys, 300)
	var zero VerifiedCode
	for i, code := range codes {
		now := testNow
		if i%4 == 0 {
			now = retire // gen 4 codes are retired: their tokens still sign
		}
		v, err := k.VerifyCode(code, now)
		if err != nil && err != ErrRetired {
			t.Fatal(err)
		}
		c := Click{Code: v.Code(), ClickID: r.Uint64(), At: now.Add(time.Duration(r.Int64N(1e12))), Node: []string{"", "hk-1", longNode}[i%3]}
		want, err := k.AppendClickToken([]byte("https://x/?rr_click="), c)
		if err != nil {
			t.Fatal(err)
		}
		twinV, _ := twin.VerifyCode(code, now)
		// The same Code under another master key of its generation.
		sameOther, err := other.VerifyCode(mustCode(t, newKeyringCache(t, []MasterKey{otherKeys[c.Code.Gen&3]}, c.Code.Gen, 0), c.Code), now)
		if (err != nil && err != ErrRetired) || sameOther.Code() != c.Code {
			t.Fatalf("other keyring: %+v, %v", sameOther.Code(), err)
		}
		otherV, _ := other.VerifyCode(codes[(i+1)%len(codes)], now)
		neighbour, _ := k.VerifyCode(codes[(i+1)%len(codes)], now)
		for name, v := range map[string]VerifiedCode{"own": v, "zero": zero, "twin keyring": twinV, "other keyring": otherV, "same code, other keyring": sameOther, "other code": neighbour} {
			got, err := k.AppendClickTokenFor([]byte("https://x/?rr_click="), v, c)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: AppendClickTokenFor = %q, %v; AppendClickToken = %q", name, got, err, want)
			}
		}
		tok := want[len("https://x/?rr_click="):]
		got, err := k.VerifyClick(tok, testNow)
		if err != nil && !(err == ErrRetired && c.Code.Gen == 4) {
			t.Fatalf("VerifyClick: %v", err)
		}
		if got.Code != c.Code || got.ClickID != c.ClickID || got.Node != c.Node || !got.At.Equal(c.At) {
			t.Fatalf("VerifyClick = %+v, want %+v", got, c)
		}
	}

	t.Run("tag comes from v", func(t *testing.T) {
		v, err := k.VerifyCode(codes[1], testNow)
		if err != nil {
			t.Fatal(err)
		}
		bad := v
		bad.tag ^= 1
		c := Click{Code: v.Code(), ClickID: 1, At: testNow, Node: "hk-1"}
		tok, err := k.AppendClickTokenFor(nil, bad, c)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(tok, mustClick(t, k, c)) {
			t.Fatal("AppendClickTokenFor recomputed the tag instead of using v's")
		}
		if _, err := k.VerifyClick(tok, testNow); err != ErrForged {
			t.Fatalf("token around a wrong code tag: %v, want ErrForged", err)
		}
	})

	t.Run("invalid clicks", func(t *testing.T) {
		v, err := k.VerifyCode(codes[2], testNow)
		if err != nil {
			t.Fatal(err)
		}
		base := Click{Code: v.Code()}
		long, badVariant, badGen, shadowed := base, base, base, base
		long.Node = longNode + "x"
		badVariant.Code.Variant = 8
		badGen.Code.Gen = 8 // residue 0 holds gen 4
		shadowed.Code.Gen = 0
		for _, c := range []Click{long, badVariant, badGen, shadowed} {
			got, err := k.AppendClickTokenFor([]byte("p"), v, c)
			_, wantErr := k.AppendClickToken([]byte("p"), c)
			if !errors.Is(err, ErrInvalid) || string(got) != "p" || err.Error() != wantErr.Error() {
				t.Fatalf("AppendClickTokenFor(%+v) = %q, %v; want dst unchanged, %v", c, got, err, wantErr)
			}
		}
	})
}

// TestCodeCacheTornReads hammers one slot with writers alternating two
// codes and readers checking that a hit always returns the value of the code
// looked up, never a mix of two writes.
func TestCodeCacheTornReads(t *testing.T) {
	c := newCodeCache(1)
	codes := [2][]byte{[]byte("0123456789ABCDEF"), []byte("fedcba9876543210")}
	vals := [2]value{{hi: 0x1234567, lo: 0x89abcdef01234567}, {hi: 0x7654321, lo: 0x76543210fedcba98}}
	const rounds = 200000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				j := (i + w) & 1
				sl, _, _ := c.lookup(codes[j])
				c.insert(sl, codes[j], vals[j])
			}
		})
	}
	var bad sync.Once
	var rwg sync.WaitGroup
	for r := range 2 {
		rwg.Go(func() {
			for i := range rounds {
				j := (i + r) & 1
				if _, v, ok := c.lookup(codes[j]); ok && v != vals[j] {
					bad.Do(func() { t.Errorf("lookup(%q) = %x, want %x", codes[j], v, vals[j]) })
					return
				}
			}
		})
	}
	rwg.Wait()
	close(stop)
	wg.Wait()
}
