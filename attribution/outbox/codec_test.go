package outbox

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

func codecCases() []struct {
	name string
	ev   attribution.Event
} {
	return []struct {
		name string
		ev   attribution.Event
	}{
		{"zero", attribution.Event{}},
		{"click", attribution.Event{ID: "01JCLICK", Kind: attribution.KindClick, At: time.Date(2026, 11, 21, 23, 0, 0, 123456789, time.UTC),
			Node: "hk-1", Region: "ap-east", Campaign: "spring-live", Code: "0123456789abcdef", Inviter: "u1", IP: "203.0.113.9",
			Country: "HK", UA: "Mozilla/5.0"}},
		{"grant", attribution.Event{ID: "g-r1-inviter", Kind: attribution.KindGrant, At: time.Unix(1, 0).UTC(), Registration: "r1",
			User: "u1", Role: "inviter", Value: -42}},
		{"unicode", attribution.Event{ID: "é☃", Kind: attribution.KindDecision, Status: "rejected", Reason: strings.Repeat("x", 300), Value: 1 << 62}},
		{"pre-epoch", attribution.Event{ID: "old", At: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"registration", attribution.Event{ID: "r2", Kind: attribution.KindRegistration, At: time.Unix(100, 0).UTC(),
			ClickAt: time.Date(2026, 11, 21, 22, 59, 58, 5, time.UTC), Campaign: "c", Invitee: "u2"}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := EncodeEvent(nil, &tc.ev)
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if !reflect.DeepEqual(got, tc.ev) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.ev)
			}
			// Every strict prefix is an error, never a panic.
			for i := 0; i < len(b); i++ {
				if _, err := DecodeEvent(b[:i]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("prefix %d: err %v, want ErrCorrupt", i, err)
				}
			}
			if _, err := DecodeEvent(append(b, 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("trailing byte: err %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestDecodeVersion1 reads records written before ClickAt existed.
func TestDecodeVersion1(t *testing.T) {
	e := attribution.Event{ID: "v1", Kind: attribution.KindRegistration, At: time.Unix(5, 0).UTC(), Campaign: "c"}
	b := EncodeEvent(nil, &e)
	// Version 1 is version 2 without the click-time varint (a single 0 byte here).
	v1 := append([]byte{1}, b[1:]...)
	p := 2
	for range 3 { // At seconds, At nanoseconds, Value
		_, n := binary.Uvarint(v1[p:])
		p += n
	}
	v1 = append(v1[:p:p], v1[p+1:]...)
	got, err := DecodeEvent(v1)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "v1" || got.Campaign != "c" || !got.ClickAt.IsZero() {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"bad version", []byte{9, 1, 0, 0, 0}},
		{"nanos too big", []byte{1, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0}},
		{"string past end", append([]byte{1, 1, 0, 0, 0, 50}, "abc"...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEvent(tc.in); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range codecCases() {
		f.Add(EncodeEvent(nil, &tc.ev))
	}
	f.Add([]byte{1, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err != nil {
			return
		}
		again, err := DecodeEvent(EncodeEvent(nil, &ev))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, ev)
		}
	})
}

func FuzzParseCursors(f *testing.F) {
	f.Add([]byte("replicator 12\ncrc 0\n"))
	f.Add([]byte("crc 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseCursors(b)
		if err != nil {
			return
		}
		for n := range m {
			if n == "" || strings.ContainsAny(n, " \n") {
				t.Fatalf("bad name %q accepted", n)
			}
		}
	})
}
