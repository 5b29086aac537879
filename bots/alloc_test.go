//go:build !race

package bots

import "testing"

func TestIsBotAllocs(t *testing.T) {
	for _, ua := range []string{typicalUA, "Googlebot/2.1", ""} {
		b := []byte(ua)
		if n := testing.AllocsPerRun(100, func() { IsBot(b) }); n != 0 {
			t.Fatalf("IsBot(%q): %v allocs/op, want 0", ua, n)
		}
	}
}
