package outbox

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/refrouter/refrouter/attribution"
)

// clickCases are clicks as a recorder makes them and at the edges of the
// encoding: empty fields, lengths that need a second varint byte, times
// before the epoch, addresses of every kind.
func clickCases() []struct {
	name string
	c    Click
} {
	at := time.Date(2026, 11, 21, 23, 0, 0, 123456789, time.UTC).UnixNano()
	return []struct {
		name string
		c    Click
	}{
		{"typical", Click{At: at, ID: []byte("01JD3Y8Q0VYW9B5M3K2R7T6XNE"), Node: "fra-1", Region: "eu-central",
			Campaign: "spring-live", Code: []byte("0123456789abcdefghij"), Inviter: "alice",
			IP: netip.MustParseAddr("203.0.113.9"), Country: []byte("DE"),
			UA: []byte("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")}},
		{"zero", Click{}},
		{"no ip no country", Click{At: at, ID: []byte("x"), Node: "n", Campaign: "c", Inviter: ""}},
		{"ipv6", Click{At: at, IP: netip.MustParseAddr("2001:db8::1"), Country: []byte("US")}},
		{"ipv4-in-6", Click{At: at, IP: netip.MustParseAddr("::ffff:198.51.100.7")}},
		{"ipv6 zone", Click{At: at, IP: netip.MustParseAddr("fe80::1%eth0")}},
		{"ipv6 long zone", Click{At: at, IP: netip.MustParseAddr("fe80::1%" + strings.Repeat("z", 200))}},
		{"ipv4 edges", Click{At: at, IP: netip.AddrFrom4([4]byte{0, 9, 10, 255})}},
		{"country half", Click{At: at, Country: []byte{'D', 0}}},
		{"pre-epoch", Click{At: -1, ID: []byte("old")}},
		{"min time", Click{At: -1 << 63}},
		{"max time", Click{At: 1<<63 - 1}},
		{"long fields", Click{At: at, ID: bytes.Repeat([]byte("i"), 127), Node: strings.Repeat("n", 128),
			Region: strings.Repeat("r", 300), Campaign: strings.Repeat("c", 16384), Code: bytes.Repeat([]byte("k"), 129),
			Inviter: strings.Repeat("é", 100), Country: bytes.Repeat([]byte("C"), 128), UA: bytes.Repeat([]byte("u"), 160)}},
		{"non-ascii ua", Click{At: at, UA: []byte("Mozilla/5.0 (Linux; Android 14; Сяоми 13) ☃ \xff\xfe invalid")}},
	}
}

// clickEventByHand is the Event a click stands for, written out without
// Click.Event, to check Event itself.
func clickEventByHand(c *Click) attribution.Event {
	e := attribution.Event{
		ID: string(c.ID), Kind: attribution.KindClick, At: time.Unix(0, c.At).UTC(),
		Node: c.Node, Region: c.Region, Campaign: c.Campaign, Code: string(c.Code), Inviter: c.Inviter,
		Country: string(c.Country), UA: string(c.UA),
	}
	if c.IP.IsValid() {
		e.IP = c.IP.String()
	}
	return e
}

// fataler is what checkClick needs of a *testing.T or *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkClick checks that c encodes as its event does, after a prefix, and
// decodes back to that event.
func checkClick(tb fataler, c *Click) {
	tb.Helper()
	ev := c.Event()
	if want := clickEventByHand(c); !reflect.DeepEqual(ev, want) {
		tb.Fatalf("Event:\n got %+v\nwant %+v", ev, want)
	}
	prefix := []byte("prefix")
	want := EncodeEvent(append([]byte(nil), prefix...), &ev)
	got := EncodeClick(append([]byte(nil), prefix...), c)
	if !bytes.Equal(got, want) {
		tb.Fatalf("EncodeClick differs from EncodeEvent:\n got %x\nwant %x", got, want)
	}
	dec, err := DecodeEvent(got[len(prefix):])
	if err != nil {
		tb.Fatalf("DecodeEvent: %v", err)
	}
	if !reflect.DeepEqual(dec, ev) {
		tb.Fatalf("decoded:\n got %+v\nwant %+v", dec, ev)
	}
}

func TestEncodeClickCases(t *testing.T) {
	for _, tc := range clickCases() {
		t.Run(tc.name, func(t *testing.T) { checkClick(t, &tc.c) })
	}
}

// drawAddr draws a client address of any kind, the zero Addr included.
func drawAddr(t *rapid.T) netip.Addr {
	switch rapid.IntRange(0, 4).Draw(t, "kind") {
	case 0:
		return netip.Addr{}
	case 1, 2:
		return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "v4")))
	case 3:
		return netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "v6")))
	default:
		a := netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "v6z")))
		return a.WithZone(rapid.StringMatching(`[a-z0-9]{0,150}`).Draw(t, "zone"))
	}
}

func TestEncodeClickProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Strings up to a few hundred bytes cross the one-byte varint length.
		str := func(label string) string { return rapid.StringN(0, 300, -1).Draw(t, label) }
		raw := func(label string, max int) []byte { return rapid.SliceOfN(rapid.Byte(), 0, max).Draw(t, label) }
		c := Click{
			At:       rapid.Int64().Draw(t, "at"),
			ID:       raw("id", 40),
			Node:     str("node"),
			Region:   str("region"),
			Campaign: str("campaign"),
			Code:     raw("code", 40),
			Inviter:  str("inviter"),
			IP:       drawAddr(t),
			Country:  raw("country", 2),
			UA:       raw("ua", 300),
		}
		checkClick(t, &c)
	})
}

// TestEncodeClickAllocs: encoding into a buffer with room allocates nothing,
// nor does adding to a Batch once its buffer has grown.
func TestEncodeClickAllocs(t *testing.T) {
	c := clickCases()[0].c
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() { buf = EncodeClick(buf[:0], &c) }); n != 0 {
		t.Fatalf("EncodeClick allocates %v times", n)
	}
	var b Batch
	for range 300 {
		b.AddClick(&c)
	}
	if n := testing.AllocsPerRun(100, func() {
		b.Reset()
		for range 256 {
			b.AddClick(&c)
		}
	}); n != 0 {
		t.Fatalf("a batch of 256 clicks allocates %v times", n)
	}
}

func BenchmarkEncodeClick(b *testing.B) {
	c := clickCases()[0].c
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeClick(buf[:0], &c)
	}
}

func BenchmarkEncodeEventClick(b *testing.B) {
	c := clickCases()[0].c
	ev := c.Event()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeEvent(buf[:0], &ev)
	}
}
