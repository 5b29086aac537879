package links

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestNewKeyring(t *testing.T) {
	k32 := testKey(0, "")
	tests := []struct {
		name    string
		keys    []MasterKey
		current uint8
		wantErr bool
	}{
		{"one key", []MasterKey{{Gen: 0, Key: k32}}, 0, false},
		{"gen 255", []MasterKey{{Gen: 255, Key: k32}}, 255, false},
		{"four residues", []MasterKey{{Gen: 4, Key: k32}, {Gen: 5, Key: k32}, {Gen: 6, Key: k32}, {Gen: 7, Key: k32}}, 6, false},
		{"older shadowed, current newest", []MasterKey{{Gen: 1, Key: k32}, {Gen: 5, Key: k32}}, 5, false},
		{"no keys", nil, 0, true},
		{"short key", []MasterKey{{Gen: 0, Key: k32[:31]}}, 0, true},
		{"duplicate gen", []MasterKey{{Gen: 2, Key: k32}, {Gen: 2, Key: k32}}, 2, true},
		{"current missing", []MasterKey{{Gen: 0, Key: k32}}, 1, true},
		{"current shadowed", []MasterKey{{Gen: 1, Key: k32}, {Gen: 5, Key: k32}}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKeyring(tt.keys, tt.current)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if k.Current() != tt.current {
				t.Fatalf("Current = %d, want %d", k.Current(), tt.current)
			}
		})
	}
}

func TestNewKeyringCopiesKey(t *testing.T) {
	key := testKey(0, "")
	k, err := NewKeyring([]MasterKey{{Gen: 0, Key: key}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	code := mustCode(t, k, Code{Campaign: 1, Inviter: 2})
	for i := range key {
		key[i] = 0
	}
	if _, err := k.Verify(code, testNow); err != nil {
		t.Fatalf("Verify after caller zeroed its key: %v", err)
	}
}

func TestLatestGen(t *testing.T) {
	past, future := testNow.Add(-time.Hour), testNow.Add(time.Hour)
	tests := []struct {
		name   string
		keys   []MasterKey
		want   uint8
		wantOK bool
	}{
		{"empty", nil, 0, false},
		{"highest", []MasterKey{{Gen: 3}, {Gen: 9}, {Gen: 4}}, 9, true},
		{"skip retired", []MasterKey{{Gen: 3}, {Gen: 9, RetireAt: past}}, 3, true},
		{"retiring later counts", []MasterKey{{Gen: 3}, {Gen: 9, RetireAt: future}}, 9, true},
		{"retired exactly now", []MasterKey{{Gen: 3}, {Gen: 9, RetireAt: testNow}}, 3, true},
		{"all retired", []MasterKey{{Gen: 3, RetireAt: past}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := LatestGen(tt.keys, testNow)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("LatestGen = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// refEncode is a math/big reference for the base62 layout.
func refEncode(v *big.Int) string {
	var b [CodeLen]byte
	x := new(big.Int).Set(v)
	m := new(big.Int)
	for i := CodeLen - 1; i >= 0; i-- {
		x.DivMod(x, big.NewInt(62), m)
		b[i] = alphabet[m.Int64()]
	}
	return string(b[:])
}

func TestBase62AgainstBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	max := new(big.Int).Lsh(big.NewInt(1), 95)
	for i := 0; i < 5000; i++ {
		v := value{hi: r.Uint64() >> (64 - hiBits), lo: r.Uint64()}
		if i == 0 {
			v = value{}
		} else if i == 1 {
			v = value{hi: 1<<hiBits - 1, lo: ^uint64(0)}
		}
		b := new(big.Int).Lsh(new(big.Int).SetUint64(v.hi), 64)
		b.Or(b, new(big.Int).SetUint64(v.lo))
		if b.Cmp(max) >= 0 {
			t.Fatal("test value out of range")
		}
		got := string(appendValue(nil, v))
		if want := refEncode(b); got != want {
			t.Fatalf("appendValue(%v) = %q, want %q", v, got, want)
		}
		back, ok := parseValue([]byte(got))
		if !ok || back != v {
			t.Fatalf("parseValue(%q) = %v, %v; want %v", got, back, ok, v)
		}
	}
}

func TestParseValue(t *testing.T) {
	maxStr := refEncode(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 95), big.NewInt(1)))
	overStr := refEncode(new(big.Int).Lsh(big.NewInt(1), 95))
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"zero", "0000000000000000", true},
		{"max 2^95-1", maxStr, true},
		{"2^95", overStr, false},
		{"all z", "zzzzzzzzzzzzzzzz", false},
		{"empty", "", false},
		{"15 chars", "000000000000000", false},
		{"17 chars", "00000000000000000", false},
		{"dash", "000000000000000-", false},
		{"space", " 000000000000000", false},
		{"underscore", "0000000_00000000", false},
		{"utf8", "00000000000000é", false},
		{"nul", "000000000000000\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok := parseValue([]byte(tt.in))
			if ok != tt.ok {
				t.Fatalf("parseValue(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			_, err := Peek([]byte(tt.in))
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("Peek(%q) err = %v", tt.in, err)
			}
			k := newTestKeyring(t, 0, 0, 1, 2, 3)
			_, err = k.Verify([]byte(tt.in), testNow)
			if err == nil {
				t.Fatalf("Verify(%q) accepted an unsigned value", tt.in)
			}
			if !tt.ok && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify(%q) err = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

// TestKnownAnswer recomputes a code from the written spec with crypto/hmac
// and math/big, independently of the package's bit twiddling.
func TestKnownAnswer(t *testing.T) {
	master := testKey(5, "kat")
	k, err := NewKeyring([]MasterKey{{Gen: 5, Key: master}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	c := Code{Campaign: 4242, Inviter: 3000000000, Variant: 6}
	got := string(mustCode(t, k, c))

	m := hmac.New(sha256.New, master)
	m.Write([]byte("refrouter/v1/campaign/4242"))
	ckey := m.Sum(nil)
	n53 := new(big.Int).SetUint64(uint64(5%4)<<51 | 6<<48 | 4242<<32 | 3000000000)
	msg := make([]byte, 7)
	n53.FillBytes(msg)
	m = hmac.New(sha256.New, ckey)
	m.Write(msg)
	sum := m.Sum(nil)
	tag := new(big.Int).Rsh(new(big.Int).SetBytes(sum[:6]), 6) // top 42 of 48 bits
	v := new(big.Int).Lsh(n53, 42)
	v.Or(v, tag)
	if want := refEncode(v); got != want {
		t.Fatalf("code = %q, want %q", got, want)
	}
}

func TestCodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, cur := range []uint8{0, 1, 6, 255} {
		k := newTestKeyring(t, cur, cur)
		for i := 0; i < 1000; i++ {
			c := Code{Campaign: uint16(r.Uint32()), Inviter: r.Uint32(), Variant: uint8(r.IntN(8)), Gen: uint8(r.Uint32())}
			switch i {
			case 0:
				c = Code{}
			case 1:
				c = Code{Campaign: 0xffff, Inviter: 0xffffffff, Variant: 7}
			}
			code := mustCode(t, k, c)
			if len(code) != CodeLen || strings.Trim(string(code), alphabet) != "" {
				t.Fatalf("code %q is not 16 base62 chars", code)
			}
			want := c
			want.Gen = cur
			got, err := k.Verify(code, testNow)
			if err != nil || got != want {
				t.Fatalf("Verify(%q) = %+v, %v; want %+v", code, got, err, want)
			}
			want.Gen = cur & 3
			if p, err := Peek(code); err != nil || p != want {
				t.Fatalf("Peek(%q) = %+v, %v; want %+v", code, p, err, want)
			}
		}
	}
}

func TestAppendCodeInvalidVariant(t *testing.T) {
	k := newTestKeyring(t, 0, 0)
	dst := []byte("x")
	got, err := k.AppendCode(dst, Code{Variant: 8})
	if !errors.Is(err, ErrInvalid) || string(got) != "x" {
		t.Fatalf("AppendCode(variant 8) = %q, %v; want dst unchanged, ErrInvalid", got, err)
	}
}

func TestAppendCodeAppends(t *testing.T) {
	k := newTestKeyring(t, 0, 0)
	c := Code{Campaign: 9, Inviter: 99}
	got, err := k.AppendCode([]byte("https://x/"), c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("https://x/")) || !bytes.Equal(got[10:], mustCode(t, k, c)) {
		t.Fatalf("AppendCode = %q", got)
	}
}

func TestSingleCharChangeRejected(t *testing.T) {
	k := newTestKeyring(t, 1, 0, 1, 2, 3)
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 4; n++ {
		code := mustCode(t, k, Code{Campaign: uint16(r.Uint32()), Inviter: r.Uint32(), Variant: uint8(r.IntN(8))})
		mut := make([]byte, CodeLen)
		for i := 0; i < CodeLen; i++ {
			for j := 0; j < len(alphabet); j++ {
				if alphabet[j] == code[i] {
					continue
				}
				copy(mut, code)
				mut[i] = alphabet[j]
				_, err := k.Verify(mut, testNow)
				if !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("Verify(%q) (from %q) err = %v, want ErrForged or ErrMalformed", mut, code, err)
				}
			}
		}
	}
}

func TestOtherKeysRejected(t *testing.T) {
	k := newTestKeyring(t, 2, 2)
	c := Code{Campaign: 5, Inviter: 77, Variant: 1}
	code := mustCode(t, k, c)

	t.Run("other master key same gen", func(t *testing.T) {
		other, err := NewKeyring([]MasterKey{{Gen: 2, Key: testKey(2, "other")}}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Verify(code, testNow); !errors.Is(err, ErrForged) {
			t.Fatalf("err = %v, want ErrForged", err)
		}
	})
	t.Run("gen not in keyring", func(t *testing.T) {
		other := newTestKeyring(t, 1, 1)
		if _, err := other.Verify(code, testNow); !errors.Is(err, ErrForged) {
			t.Fatalf("err = %v, want ErrForged", err)
		}
	})
	t.Run("tag of another campaign's key", func(t *testing.T) {
		s := k.slots[2]
		for _, camp := range []uint16{6, 4, 5 + 256} {
			forged := c
			forged.Gen = 2
			forged.Campaign = camp
			st := s.campaignKey(5).get()
			n := forged.n53()
			fc := appendValue(nil, makeValue(n, st.codeTag(n)))
			if _, err := k.Verify(fc, testNow); !errors.Is(err, ErrForged) {
				t.Fatalf("campaign %d code with campaign 5's tag: err = %v, want ErrForged", camp, err)
			}
		}
	})
	t.Run("fields moved under a valid tag", func(t *testing.T) {
		v, _ := parseValue(code)
		for _, n := range []uint64{v.n53() ^ 1<<32, v.n53() ^ 1, v.n53() ^ 1<<48} {
			fc := appendValue(nil, makeValue(n, v.tag()))
			if _, err := k.Verify(fc, testNow); !errors.Is(err, ErrForged) {
				t.Fatalf("%q: err = %v, want ErrForged", fc, err)
			}
		}
	})
}

func TestRetirement(t *testing.T) {
	retire := testNow.Add(24 * time.Hour)
	old := MasterKey{Gen: 6, Key: testKey(6, ""), RetireAt: retire}
	cur := MasterKey{Gen: 7, Key: testKey(7, "")}
	issuerOld, err := NewKeyring([]MasterKey{old}, 6)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeyring([]MasterKey{old, cur}, 7)
	if err != nil {
		t.Fatal(err)
	}
	c := Code{Campaign: 1, Inviter: 2, Variant: 3}
	oldCode := mustCode(t, issuerOld, c)
	newCode := mustCode(t, k, c)
	tests := []struct {
		name    string
		code    []byte
		now     time.Time
		wantErr error
		wantGen uint8
	}{
		{"old before retire", oldCode, retire.Add(-time.Nanosecond), nil, 6},
		{"old at retire", oldCode, retire, ErrRetired, 6},
		{"old after retire", oldCode, retire.Add(time.Hour), ErrRetired, 6},
		{"new after retire", newCode, retire.Add(time.Hour), nil, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Verify(tt.code, tt.now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			want := c
			want.Gen = tt.wantGen
			if got != want {
				t.Fatalf("code = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("forged beats retired", func(t *testing.T) {
		bad := bytes.Clone(oldCode)
		bad[15] = alphabet[(strings.IndexByte(alphabet, bad[15])+1)%62]
		if _, err := k.Verify(bad, retire.Add(time.Hour)); !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("err = %v, want ErrForged", err)
		}
	})
}

func TestGenerationRotation(t *testing.T) {
	// Gens 3..7: gen 7 shadows gen 3 (same residue), so gen 3's codes stop verifying.
	issued := map[uint8][]byte{}
	c := Code{Campaign: 300, Inviter: 1}
	for g := uint8(3); g <= 7; g++ {
		issued[g] = mustCode(t, newTestKeyring(t, g, g), c)
	}
	k := newTestKeyring(t, 7, 3, 4, 5, 6, 7)
	for g, code := range issued {
		got, err := k.Verify(code, testNow)
		if g == 3 {
			if !errors.Is(err, ErrForged) {
				t.Fatalf("gen 3 code: err = %v, want ErrForged", err)
			}
			continue
		}
		if err != nil || got.Gen != g {
			t.Fatalf("gen %d code: %+v, %v", g, got, err)
		}
	}
}

func TestVerifyConcurrent(t *testing.T) {
	k := newTestKeyring(t, 0, 0)
	codes := make([][]byte, 512)
	for i := range codes {
		codes[i] = mustCode(t, k, Code{Campaign: uint16(i * 131), Inviter: uint32(i)})
	}
	k2 := newTestKeyring(t, 0, 0) // fresh cache, derived concurrently
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for i, code := range codes {
				c, err := k2.Verify(code, testNow)
				if err != nil || c.Inviter != uint32(i) {
					errc <- errors.New("verify failed: " + string(code))
					return
				}
			}
			errc <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// cachedKeys counts the derived keys cached in k.
func cachedKeys(k *Keyring) int {
	n := 0
	for _, s := range k.slots {
		if s == nil {
			continue
		}
		for i := range s.pages {
			p := s.pages[i].Load()
			if p == nil {
				continue
			}
			for j := range p {
				if p[j].Load() != nil {
					n++
				}
			}
		}
	}
	return n
}

func TestForgedCodesDoNotFillCache(t *testing.T) {
	issuer := newTestKeyring(t, 0, 0)
	k := newTestKeyring(t, 0, 0, 1, 2, 3)
	for camp := 0; camp < 1<<16; camp += 97 {
		n := Code{Campaign: uint16(camp), Inviter: 1}.n53()
		forged := appendValue(nil, makeValue(n, uint64(camp)))
		if _, err := k.Verify(forged, testNow); !errors.Is(err, ErrForged) {
			t.Fatalf("campaign %d: err = %v, want ErrForged", camp, err)
		}
	}
	if n := cachedKeys(k); n != 0 {
		t.Fatalf("%d keys cached after forged codes only, want 0", n)
	}
	code := mustCode(t, issuer, Code{Campaign: 77, Inviter: 1})
	if _, err := k.Verify(code, testNow); err != nil {
		t.Fatal(err)
	}
	if n := cachedKeys(k); n != 1 {
		t.Fatalf("%d keys cached after one genuine code, want 1", n)
	}
	tok := mustClick(t, issuer, Click{Code: Code{Campaign: 78, Inviter: 1}})
	if _, err := k.VerifyClick(tok, testNow); err != nil {
		t.Fatal(err)
	}
	if n := cachedKeys(k); n != 2 {
		t.Fatalf("%d keys cached after a genuine click token, want 2", n)
	}
}
