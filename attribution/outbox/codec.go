package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// codecVersion is the first byte of every encoded event. Version 2 added
// ClickAt; decoders read versions 1 and 2 and reject others.
const codecVersion = 2

// ErrCorrupt is returned (wrapped) when bytes on disk or given to DecodeEvent are not a valid encoding.
var ErrCorrupt = errors.New("outbox: corrupt record")

// eventStrings lists the string fields of an Event in their fixed on-disk order.
// Appending new fields needs a new codecVersion.
func eventStrings(e *attribution.Event) [16]*string {
	return [16]*string{
		&e.ID, &e.Node, &e.Region, &e.Campaign, &e.Code, &e.Inviter, &e.Invitee, &e.Device,
		&e.IP, &e.Country, &e.UA, &e.Registration, &e.Status, &e.Reason, &e.User, &e.Role,
	}
}

// EncodeEvent appends the compact binary encoding of e to dst and returns the extended slice.
// Layout: version byte, kind byte, At as zigzag varint seconds + uvarint nanoseconds,
// Value as zigzag varint, ClickAt as zigzag varint unix nanoseconds (0 = zero time), then 16 strings each as uvarint length + bytes.
// It is safe for concurrent use and does not retain dst or e.
func EncodeEvent(dst []byte, e *attribution.Event) []byte {
	dst = append(dst, codecVersion, byte(e.Kind))
	dst = binary.AppendVarint(dst, e.At.Unix())
	dst = binary.AppendUvarint(dst, uint64(e.At.Nanosecond()))
	dst = binary.AppendVarint(dst, e.Value)
	var click int64
	if !e.ClickAt.IsZero() {
		click = e.ClickAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, click)
	for _, s := range eventStrings(e) {
		dst = binary.AppendUvarint(dst, uint64(len(*s)))
		dst = append(dst, *s...)
	}
	return dst
}

// DecodeEvent decodes one event encoded by EncodeEvent. The whole of b must be consumed.
// Errors wrap ErrCorrupt. The returned strings do not alias b (they share one copy). At is in UTC.
func DecodeEvent(b []byte) (attribution.Event, error) {
	var e attribution.Event
	if len(b) < 2 {
		return e, fmt.Errorf("decode event: %d bytes: %w", len(b), ErrCorrupt)
	}
	if b[0] != 1 && b[0] != codecVersion {
		return e, fmt.Errorf("decode event: version %d: %w", b[0], ErrCorrupt)
	}
	e.Kind = attribution.Kind(b[1])
	p := 2
	sec, n := binary.Varint(b[p:])
	if n <= 0 {
		return e, fmt.Errorf("decode event: time seconds: %w", ErrCorrupt)
	}
	p += n
	nsec, n := binary.Uvarint(b[p:])
	if n <= 0 || nsec >= 1e9 {
		return e, fmt.Errorf("decode event: time nanoseconds: %w", ErrCorrupt)
	}
	p += n
	e.At = time.Unix(sec, int64(nsec)).UTC()
	e.Value, n = binary.Varint(b[p:])
	if n <= 0 {
		return e, fmt.Errorf("decode event: value: %w", ErrCorrupt)
	}
	p += n
	if b[0] >= 2 {
		click, n := binary.Varint(b[p:])
		if n <= 0 {
			return e, fmt.Errorf("decode event: click time: %w", ErrCorrupt)
		}
		p += n
		if click != 0 {
			e.ClickAt = time.Unix(0, click).UTC()
		}
	}
	// One allocation for all strings: they are substrings of a copy of the rest of b.
	rest := string(b[p:])
	base := p
	for i, s := range eventStrings(&e) {
		l, n := binary.Uvarint(b[p:])
		if n <= 0 || l > uint64(len(b)-p-n) {
			return e, fmt.Errorf("decode event: string %d: %w", i, ErrCorrupt)
		}
		p += n
		*s = rest[p-base : p-base+int(l)]
		p += int(l)
	}
	if p != len(b) {
		return e, fmt.Errorf("decode event: %d trailing bytes: %w", len(b)-p, ErrCorrupt)
	}
	return e, nil
}
