package ascii

import "testing"

func TestCase(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		wantLower, wantUpper := b, b
		if 'A' <= b && b <= 'Z' {
			wantLower = b + 32
		}
		if 'a' <= b && b <= 'z' {
			wantUpper = b - 32
		}
		if Lower(b) != wantLower || Upper(b) != wantUpper {
			t.Fatalf("byte %#x: Lower %#x Upper %#x, want %#x %#x", b, Lower(b), Upper(b), wantLower, wantUpper)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "a": "a", " \ta b\t ": "a b", "\t": "", "  x": "x", "x  ": "x", "\u00a0x": "\u00a0x",
	} {
		if got := TrimOWS([]byte(in)); string(got) != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", in, got, want)
		}
	}
	// An all-blank value stays non-nil: present but empty.
	if got := TrimOWS([]byte(" \t ")); got == nil || len(got) != 0 {
		t.Fatalf("TrimOWS of blanks = %#v, want empty and non-nil", got)
	}
}
