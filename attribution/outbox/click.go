package outbox

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// Click is a click event given as the values a click recorder holds, for
// EncodeClick: byte slices where the recorder has bytes, strings where it has
// strings, so that encoding one copies each field once and allocates nothing.
// Its event is the attribution.Event that Event returns; fields of an Event
// that Click lacks are empty for clicks.
type Click struct {
	At       int64      // when the click happened, unix nanoseconds (Event.At is time.Unix(0, At).UTC())
	ID       []byte     // the event id (a ULID's text)
	Node     string     // name of the recording node
	Region   string     // region of the recording node
	Campaign string     // campaign id
	Code     []byte     // share code
	Inviter  string     // inviter user id
	IP       netip.Addr // client address; the zero Addr is an empty IP
	Country  []byte     // ISO country of the client address, empty when unknown
	UA       []byte     // user agent, as recorded (EncodeClick does not check that it is UTF-8)
}

// Event returns the event that c encodes to: EncodeClick(dst, c) appends
// exactly what EncodeEvent(dst, &e) appends for e = c.Event().
func (c *Click) Event() attribution.Event {
	return attribution.Event{
		ID:       string(c.ID),
		Kind:     attribution.KindClick,
		At:       time.Unix(0, c.At).UTC(),
		Node:     c.Node,
		Region:   c.Region,
		Campaign: c.Campaign,
		Code:     string(c.Code),
		Inviter:  c.Inviter,
		IP:       string(c.IP.AppendTo(nil)),
		Country:  string(c.Country),
		UA:       string(c.UA),
	}
}

// EncodeClick appends the encoding of c's event to dst and returns the
// extended slice: byte for byte what EncodeEvent appends for c.Event(), so
// that DecodeEvent, readers and existing records are unaffected, without
// building the Event. It is safe for concurrent use, does not retain dst or
// c, and does not allocate when dst has room.
func EncodeClick(dst []byte, c *Click) []byte {
	// Event.At as EncodeEvent writes it: seconds floored, nanoseconds in [0, 1e9).
	sec, nsec := c.At/1e9, c.At%1e9
	if nsec < 0 {
		nsec += 1e9
		sec--
	}
	dst = append(dst, codecVersion, byte(attribution.KindClick))
	dst = binary.AppendVarint(dst, sec)
	dst = binary.AppendUvarint(dst, uint64(nsec))
	// Value and ClickAt are zero: one zero byte each. Then the 16 strings in
	// eventStrings' order: ID, Node, Region, Campaign, Code, Inviter, Invitee,
	// Device, IP, Country, UA, Registration, Status, Reason, User, Role.
	dst = append(dst, 0, 0)
	dst = appendField(dst, c.ID)
	dst = appendField(dst, c.Node)
	dst = appendField(dst, c.Region)
	dst = appendField(dst, c.Campaign)
	dst = appendField(dst, c.Code)
	dst = appendField(dst, c.Inviter)
	dst = append(dst, 0, 0) // Invitee, Device
	dst = appendAddr(dst, c.IP)
	dst = appendField(dst, c.Country)
	dst = appendField(dst, c.UA)
	return append(dst, 0, 0, 0, 0, 0) // Registration, Status, Reason, User, Role
}

// appendField appends s as EncodeEvent writes a string: uvarint length, bytes.
func appendField[T string | []byte](dst []byte, s T) []byte {
	if len(s) < 0x80 {
		dst = append(dst, byte(len(s)))
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
	}
	return append(dst, s...)
}

// appendAddr appends the text of ip (empty for the zero Addr) as a string
// field, as ip.AppendTo writes it.
func appendAddr(dst []byte, ip netip.Addr) []byte {
	if ip.Is4() {
		a := ip.As4()
		l := 3 + int(decimals[a[0]][3]) + int(decimals[a[1]][3]) + int(decimals[a[2]][3]) + int(decimals[a[3]][3])
		dst = append(dst, byte(l))
		dst = appendOctet(dst, a[0])
		dst = append(dst, '.')
		dst = appendOctet(dst, a[1])
		dst = append(dst, '.')
		dst = appendOctet(dst, a[2])
		dst = append(dst, '.')
		return appendOctet(dst, a[3])
	}
	// Write the text in place after its length byte.
	at := len(dst)
	dst = append(dst, 0)
	dst = ip.AppendTo(dst)
	l := len(dst) - at - 1
	if l < 0x80 {
		dst[at] = byte(l)
		return dst
	}
	// Only an IPv6 address with a long zone gets here: its length needs more
	// than one byte, so move the text up to make room.
	var lb [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(lb[:], uint64(l))
	dst = append(dst, lb[1:k]...)
	copy(dst[at+k:], dst[at+1:at+1+l])
	copy(dst[at:], lb[:k])
	return dst
}

// decimals[b] holds the decimal digits of b and, in its last byte, their number.
var decimals = func() (t [256][4]byte) {
	for i := range t {
		s := strconv.Itoa(i)
		copy(t[i][:], s)
		t[i][3] = byte(len(s))
	}
	return t
}()

// appendOctet appends b in decimal.
func appendOctet(dst []byte, b byte) []byte {
	d := &decimals[b]
	return append(dst, d[:d[3]]...)
}
