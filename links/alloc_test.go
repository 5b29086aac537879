//go:build !race

package links

import (
	"bytes"
	"testing"
)

func TestAllocs(t *testing.T) {
	for _, ver := range clickVersions {
		t.Run(versionName(ver), func(t *testing.T) { testAllocs(t, ver) })
	}
}

func testAllocs(t *testing.T, ver uint8) {
	k := newTestKeyringVersion(t, ver, 1, 1)
	// Issued elsewhere, so k's cache starts cold and Verify must fill it.
	code := mustCode(t, newTestKeyring(t, 1, 1), Code{Campaign: 7, Inviter: 8, Variant: 1})
	click := Click{Code: Code{Campaign: 7, Inviter: 8, Variant: 1, Gen: 1}, ClickID: 9, At: testNow, Node: "hk-1"}
	forged := bytes.Clone(code)
	forged[15] = alphabet[(bytes.IndexByte([]byte(alphabet), forged[15])+1)%len(alphabet)]
	codeBuf := make([]byte, 0, CodeLen)
	tokBuf := make([]byte, 0, MaxClickTokenLen)
	tests := []struct {
		name string
		f    func()
	}{
		{"Verify", func() {
			if _, err := k.Verify(code, testNow); err != nil {
				t.Fatal(err)
			}
		}},
		{"Verify malformed", func() { _, _ = k.Verify(code[:15], testNow) }},
		{"Verify forged", func() { _, _ = k.Verify(forged, testNow) }},
		{"VerifyCode", func() {
			if _, err := k.VerifyCode(code, testNow); err != nil {
				t.Fatal(err)
			}
		}},
		{"AppendClickTokenFor", func() {
			v, err := k.VerifyCode(code, testNow)
			if err != nil {
				t.Fatal(err)
			}
			c := click
			c.Code = v.Code()
			if _, err := k.AppendClickTokenFor(tokBuf[:0], v, c); err != nil {
				t.Fatal(err)
			}
		}},
		{"AppendCode", func() { _, _ = k.AppendCode(codeBuf[:0], Code{Campaign: 7, Inviter: 8}) }},
		{"AppendClickToken", func() {
			if _, err := k.AppendClickToken(tokBuf[:0], click); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // warm the campaign key and code caches
			if n := testing.AllocsPerRun(200, tt.f); n != 0 {
				t.Fatalf("%s: %v allocs/op, want 0", tt.name, n)
			}
		})
	}
	if !isCached(k, code) {
		t.Fatal("the code was not cached: the Verify figures are not for hits")
	}
	// Tokens of both versions verify with one allocation, whichever version
	// k signs.
	for _, tv := range clickVersions {
		tok := mustClick(t, newTestKeyringVersion(t, tv, 1, 1), Click{Code: Code{Campaign: 70, Gen: 1}, Node: "hk-1"})
		if _, err := k.VerifyClick(tok, testNow); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() { _, _ = k.VerifyClick(tok, testNow) }); n > 1 {
			t.Fatalf("VerifyClick of a v%d token: %v allocs/op, want <= 1 (the node name)", tv, n)
		}
	}
}

func TestCMACAllocs(t *testing.T) {
	c, err := newCMACKey(testKey(1, "")[:16])
	if err != nil {
		t.Fatal(err)
	}
	x := new([16]byte)
	msg := testKey(2, "")
	for _, n := range []int{0, 16, 17, 32} {
		if a := testing.AllocsPerRun(200, func() { c.sum(x, msg[:n]) }); a != 0 {
			t.Fatalf("sum of %d bytes: %v allocs/op, want 0", n, a)
		}
	}
}
