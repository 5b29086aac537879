package links

import "testing"

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

func BenchmarkAppendCode(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	buf := make([]byte, 0, CodeLen)
	buf, _ = k.AppendCode(buf[:0], Code{Campaign: 7}) // cache the campaign key
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = k.AppendCode(buf[:0], Code{Campaign: 7, Inviter: uint32(i)})
	}
}

func BenchmarkAppendClickToken(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	c := Click{Code: Code{Campaign: 7, Inviter: 123456, Variant: 2, Gen: 1}, At: testNow, Node: "fra-1"}
	buf := make([]byte, 0, MaxClickTokenLen)
	buf, _ = k.AppendClickToken(buf[:0], c) // cache the campaign key
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.ClickID = uint64(i)
		buf, _ = k.AppendClickToken(buf[:0], c)
	}
}

func BenchmarkVerifyClick(b *testing.B) {
	k := newTestKeyring(b, 1, 1)
	tok := mustClick(b, k, Click{Code: Code{Campaign: 7, Inviter: 123456, Gen: 1}, ClickID: 9, At: testNow, Node: "fra-1"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.VerifyClick(tok, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQRCodePNG(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := QRCodePNG("https://hk-1.example.com/0123456789ABCDEF", 256); err != nil {
			b.Fatal(err)
		}
	}
}
