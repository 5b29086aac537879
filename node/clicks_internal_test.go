package node

import (
	"testing"
	"unsafe"
)

func TestInterner(t *testing.T) {
	in := interner{m: map[string]string{}, max: 3}
	a := in.get([]byte("Mozilla/5.0"))
	b := in.get([]byte("Mozilla/5.0"))
	if a != "Mozilla/5.0" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatalf("second get of the same bytes did not reuse the string")
	}
	buf := []byte("203.0.113.10")
	s := in.get(buf)
	buf[0] = '9' // the interned string must not alias the caller's bytes
	if s != "203.0.113.10" {
		t.Fatalf("interned string changed with its source bytes: %q", s)
	}
	in.get([]byte("x"))
	if len(in.m) != 3 {
		t.Fatalf("%d strings held, want 3", len(in.m))
	}
	in.get([]byte("y")) // over max: forgets everything, keeps the new one
	if len(in.m) != 1 || in.get([]byte("y")) != "y" {
		t.Fatalf("after overflow: %d strings held", len(in.m))
	}
	if n := testing.AllocsPerRun(100, func() { in.get([]byte("y")) }); n != 0 {
		t.Fatalf("a hit allocates %v times", n)
	}
}
