package links

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func BenchmarkVerify(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
	if _, err := k.Verify(code, testNow); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Verify(code, testNow); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyHit verifies one code over and over: after the first call
// every call is a hit of the code cache.
func BenchmarkVerifyHit(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
	if _, err := k.Verify(code, testNow); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(code, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached is Verify with the code cache disabled: one HMAC
// per call, the cost of every verification before the cache.
func BenchmarkVerifyUncached(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	k.cache = nil
	code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(code, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyMiss cycles through 65536 distinct genuine codes, 8 per
// cache slot, so nearly every call misses and writes its slot; "nocache"
// runs the same codes with the cache disabled.
func BenchmarkVerifyMiss(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	codes := make([][CodeLen]byte, 1<<16)
	for i := range codes {
		codes[i] = [CodeLen]byte(mustCode(b, k, Code{Campaign: 7, Inviter: uint32(i), Variant: 2}))
	}
	for _, cached := range []bool{true, false} {
		name := "cache"
		if !cached {
			name = "nocache"
		}
		b.Run(name, func(b *testing.B) {
			k := newTestKeyring(b, 1, 1)
			if !cached {
				k.cache = nil
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := k.Verify(codes[i&(len(codes)-1)][:], testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyForged verifies a forged code (wrong tag): one HMAC, never
// cached.
func BenchmarkVerifyForged(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
	code[15] = alphabet[(bytes.IndexByte([]byte(alphabet), code[15])+1)%len(alphabet)]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(code, testNow); err != ErrForged {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedirectTokenOld is the redirect's use of the package before
// VerifyCode, the code cache and v2 tokens: Verify (one HMAC), then
// AppendClickToken (two: the code tag again and the v1 token).
func BenchmarkRedirectTokenOld(b *testing.B) {
	k := newTestKeyringVersion(b, ClickTokenV1, 1, 1)
	k.cache = nil
	code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
	buf := make([]byte, 0, MaxClickTokenLen)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c, err := k.Verify(code, testNow)
		if err != nil {
			b.Fatal(err)
		}
		buf, _ = k.AppendClickToken(buf[:0], Click{Code: c, ClickID: uint64(i), At: testNow, Node: "fra-1"})
	}
}

// benchClickVersions runs f as one sub-benchmark per click token version,
// with a keyring of generation 1 signing that version.
func benchClickVersions(b *testing.B, f func(b *testing.B, k *Keyring)) {
	for _, v := range clickVersions {
		b.Run(versionName(v), func(b *testing.B) { f(b, newTestKeyringVersion(b, v, 1, 1)) })
	}
}

// BenchmarkRedirectToken is the redirect's steady state with VerifyCode and
// AppendClickTokenFor: a cache hit and the token's own MAC.
func BenchmarkRedirectToken(b *testing.B) {
	benchClickVersions(b, func(b *testing.B, k *Keyring) {
		code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
		buf := make([]byte, 0, MaxClickTokenLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v, err := k.VerifyCode(code, testNow)
			if err != nil {
				b.Fatal(err)
			}
			buf, _ = k.AppendClickTokenFor(buf[:0], v, Click{Code: v.Code(), ClickID: uint64(i), At: testNow, Node: "fra-1"})
		}
	})
}

// BenchmarkAppendClickTokenFor signs tokens for a verified code: the
// token's MAC alone (v1: HMAC-SHA256, v2: AES-128-CMAC), what the redirect
// pays per click.
func BenchmarkAppendClickTokenFor(b *testing.B) {
	benchClickVersions(b, func(b *testing.B, k *Keyring) {
		code := mustCode(b, k, Code{Campaign: 7, Inviter: 123456, Variant: 2})
		v, err := k.VerifyCode(code, testNow)
		if err != nil {
			b.Fatal(err)
		}
		c := Click{Code: v.Code(), At: testNow, Node: "fra-1"}
		buf := make([]byte, 0, MaxClickTokenLen)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.ClickID = uint64(i)
			buf, _ = k.AppendClickTokenFor(buf[:0], v, c)
		}
	})
}

func BenchmarkAppendCode(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	buf := make([]byte, 0, CodeLen)
	buf, _ = k.AppendCode(buf[:0], Code{Campaign: 7}) // cache the campaign key
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = k.AppendCode(buf[:0], Code{Campaign: 7, Inviter: uint32(i)})
	}
}

// BenchmarkAppendClickToken signs tokens without a VerifiedCode: the code's
// tag (an HMAC) and the token's MAC.
func BenchmarkAppendClickToken(b *testing.B) {
	benchClickVersions(b, func(b *testing.B, k *Keyring) {
		c := Click{Code: Code{Campaign: 7, Inviter: 123456, Variant: 2, Gen: 1}, At: testNow, Node: "fra-1"}
		buf := make([]byte, 0, MaxClickTokenLen)
		buf, _ = k.AppendClickToken(buf[:0], c) // cache the campaign key
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.ClickID = uint64(i)
			buf, _ = k.AppendClickToken(buf[:0], c)
		}
	})
}

// BenchmarkVerifyClickToken verifies a token of each version: its MAC, the
// embedded code's tag (an HMAC) and the node name's allocation.
func BenchmarkVerifyClickToken(b *testing.B) {
	benchClickVersions(b, func(b *testing.B, k *Keyring) {
		tok := mustClick(b, k, Click{Code: Code{Campaign: 7, Inviter: 123456, Gen: 1}, ClickID: 9, At: testNow, Node: "fra-1"})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.VerifyClick(tok, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClickTokenMAC is the MAC of a 35-byte token body (node name
// "fra-1") alone: v1's HMAC-SHA256 through the pooled state, v2's
// AES-128-CMAC (3 block encryptions).
func BenchmarkClickTokenMAC(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	ck := k.slots[1].campaignKey(7)
	var body [offNode + 5]byte
	b.Run("v1", func(b *testing.B) {
		st := ck.get()
		defer ck.put(st)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			st.buf[offClickID] = byte(i)
			st.mac(st.buf[:len(body)])
		}
	})
	b.Run("v2", func(b *testing.B) {
		cm := ck.clickKey()
		x := new([16]byte)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			body[offClickID] = byte(i)
			cm.sum(x, body[:])
		}
	})
}

func BenchmarkQRCodePNG(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QRCodePNG("https://hk-1.example.com/0123456789ABCDEF", 256); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMACOverhead compares one code tag (an HMAC of 7 bytes through
// the pooled crypto/hmac state) with its floor, the two SHA-256 compressions
// any HMAC-SHA256 needs (two one-block sha256.Sum256 calls): the gap is all
// a hand-rolled HMAC could save.
func BenchmarkMACOverhead(b *testing.B) {
	b.Run("codeTag", func(b *testing.B) {
		k := newTestKeyring(b, 1, 1)
		ck := k.slots[1].campaignKey(7)
		st := ck.get()
		defer ck.put(st)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			st.codeTag(uint64(i))
		}
	})
	b.Run("sha256x2", func(b *testing.B) {
		var msg [7]byte
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			msg[0] = byte(i)
			inner := sha256.Sum256(msg[:])
			sha256.Sum256(inner[:])
		}
	})
}
