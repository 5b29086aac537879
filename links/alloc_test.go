//go:build !race

package links

import "testing"

func TestAllocs(t *testing.T) {
	k := newTestKeyring(t, 1, 1)
	// Issued elsewhere, so k's cache starts cold and Verify must fill it.
	code := mustCode(t, newTestKeyring(t, 1, 1), Code{Campaign: 7, Inviter: 8, Variant: 1})
	click := Click{Code: Code{Campaign: 7, Inviter: 8, Variant: 1, Gen: 1}, ClickID: 9, At: testNow, Node: "hk-1"}
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
		{"AppendCode", func() { _, _ = k.AppendCode(codeBuf[:0], Code{Campaign: 7, Inviter: 8}) }},
		{"AppendClickToken", func() {
			if _, err := k.AppendClickToken(tokBuf[:0], click); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // warm the campaign key cache
			if n := testing.AllocsPerRun(200, tt.f); n != 0 {
				t.Fatalf("%s: %v allocs/op, want 0", tt.name, n)
			}
		})
	}
	tok := mustClick(t, newTestKeyring(t, 1, 1), Click{Code: Code{Campaign: 70, Gen: 1}, Node: "hk-1"})
	_, _ = k.VerifyClick(tok, testNow)
	if n := testing.AllocsPerRun(200, func() { _, _ = k.VerifyClick(tok, testNow) }); n > 1 {
		t.Fatalf("VerifyClick: %v allocs/op, want <= 1 (the node name)", n)
	}
}
