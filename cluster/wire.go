package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// cmdID is the random 16-byte id that travels with every command.
type cmdID [16]byte

// command is one command with its id, as batched into a raft entry or a
// forwarding request.
type command struct {
	id  cmdID
	cmd []byte
}

// reply is the outcome of one command as sent back over the forwarding RPC.
type reply struct {
	id    cmdID
	index uint64
	ok    bool   // false: the leader could not apply it; retry
	data  []byte // result, or the error text when !ok
}

const (
	entryVersion  = 1
	maxFrameBytes = 64 << 20
)

// MaxCommandBytes is the largest command Apply accepts: one that fits
// alone in a forwarding frame.
const MaxCommandBytes = maxFrameBytes - binary.MaxVarintLen64 - 16 - binary.MaxVarintLen64

// ErrCommandTooLarge is the cause of an Apply of a command longer than
// MaxCommandBytes; it is not retried.
var ErrCommandTooLarge = errors.New("cluster: command too large")

// commandBytes is the most bytes appendCommands writes for one command.
func commandBytes(cmd []byte) int { return 16 + binary.MaxVarintLen64 + len(cmd) }

// errMalformed reports a frame or entry that does not decode.
var errMalformed = errors.New("cluster: malformed message")

// uvarint is binary.Uvarint that also refuses (k == 0) a value written in
// more bytes than it needs: appendCommands and appendReplies never write one,
// so each message has exactly one encoding.
func uvarint(b []byte) (v uint64, k int) {
	v, k = binary.Uvarint(b)
	if k > 1 && b[k-1] == 0 {
		return 0, 0
	}
	return v, k
}

// appendCommands appends the encoding of cmds: uvarint count, then for each
// the id, a uvarint length and the bytes.
func appendCommands(b []byte, cmds []command) []byte {
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = append(b, c.id[:]...)
		b = binary.AppendUvarint(b, uint64(len(c.cmd)))
		b = append(b, c.cmd...)
	}
	return b
}

// decodeCommands decodes what appendCommands wrote; the commands alias b.
func decodeCommands(b []byte) ([]command, error) {
	n, k := uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("command count: %w", errMalformed)
	}
	b = b[k:]
	if n > uint64(len(b))/17 {
		return nil, fmt.Errorf("command count %d for %d bytes: %w", n, len(b), errMalformed)
	}
	out := make([]command, 0, n)
	for i := uint64(0); i < n; i++ {
		var c command
		if len(b) < 16 {
			return nil, fmt.Errorf("command %d id: %w", i, errMalformed)
		}
		copy(c.id[:], b[:16])
		b = b[16:]
		l, k := uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("command %d length: %w", i, errMalformed)
		}
		b = b[k:]
		c.cmd = b[:l:l]
		b = b[l:]
		out = append(out, c)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes: %w", len(b), errMalformed)
	}
	return out, nil
}

// encodeEntry encodes the data of one raft log entry.
func encodeEntry(cmds []command) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		size += 16 + binary.MaxVarintLen64 + len(c.cmd)
	}
	return appendCommands(append(make([]byte, 0, size), entryVersion), cmds)
}

// decodeEntry decodes the data of one raft log entry.
func decodeEntry(b []byte) ([]command, error) {
	if len(b) == 0 || b[0] != entryVersion {
		return nil, fmt.Errorf("entry version: %w", errMalformed)
	}
	return decodeCommands(b[1:])
}

// appendReplies encodes replies: uvarint count, then id, ok byte, uvarint
// index, uvarint length and data for each.
func appendReplies(b []byte, rs []reply) []byte {
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = append(b, r.id[:]...)
		ok := byte(0)
		if r.ok {
			ok = 1
		}
		b = append(b, ok)
		b = binary.AppendUvarint(b, r.index)
		b = binary.AppendUvarint(b, uint64(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

// decodeReplies decodes what appendReplies wrote; the data aliases b.
func decodeReplies(b []byte) ([]reply, error) {
	n, k := uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("reply count: %w", errMalformed)
	}
	b = b[k:]
	if n > uint64(len(b))/19 {
		return nil, fmt.Errorf("reply count %d for %d bytes: %w", n, len(b), errMalformed)
	}
	out := make([]reply, 0, n)
	for i := uint64(0); i < n; i++ {
		var r reply
		if len(b) < 17 {
			return nil, fmt.Errorf("reply %d header: %w", i, errMalformed)
		}
		copy(r.id[:], b[:16])
		switch b[16] {
		case 0:
		case 1:
			r.ok = true
		default:
			return nil, fmt.Errorf("reply %d status %d: %w", i, b[16], errMalformed)
		}
		b = b[17:]
		idx, k := uvarint(b)
		if k <= 0 {
			return nil, fmt.Errorf("reply %d index: %w", i, errMalformed)
		}
		r.index = idx
		b = b[k:]
		l, k := uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("reply %d length: %w", i, errMalformed)
		}
		b = b[k:]
		r.data = b[:l:l]
		b = b[l:]
		out = append(out, r)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes: %w", len(b), errMalformed)
	}
	return out, nil
}

// writeFrame writes a 4-byte big-endian length and payload.
func writeFrame(w io.Writer, payload []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write frame header: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// readFrame reads one frame written by writeFrame into buf (grown as needed).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrameBytes {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, errMalformed)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return buf, nil
}
