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

func TestStrings(t *testing.T) {
	for _, c := range []struct{ in, lower, upper string }{
		{"", "", ""},
		{"abc", "abc", "ABC"},
		{"ABC", "abc", "ABC"},
		{"MiXeD-09_", "mixed-09_", "MIXED-09_"},
		{"ſ\u212a", "ſ\u212a", "ſ\u212a"}, // Unicode letters stay as they are
		{"Gr\u00fc\u00dfe", "gr\u00fc\u00dfe", "GR\u00fc\u00dfE"},
	} {
		if got := LowerString(c.in); got != c.lower {
			t.Errorf("LowerString(%q) = %q, want %q", c.in, got, c.lower)
		}
		if got := UpperString(c.in); got != c.upper {
			t.Errorf("UpperString(%q) = %q, want %q", c.in, got, c.upper)
		}
	}
}
