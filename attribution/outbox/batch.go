package outbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/refrouter/refrouter/attribution"
)

// Batch is a sequence of encoded events for Outbox.AppendBatch. It keeps them
// back to back in one buffer, already framed as records (AppendBatch only
// stamps each with its seq and checksum), and Reset keeps that buffer for
// reuse, so that a caller appending batch after batch allocates nothing in
// steady state. The zero Batch is empty and ready to use. A Batch is not safe
// for concurrent use and must not be used during an AppendBatch given it.
type Batch struct {
	buf []byte // frames as on disk; seq and CRC are set by AppendBatch
	n   int    // events in buf
	err error  // why an Add refused an event, failing the next AppendBatch
}

// Len returns the number of events in the batch.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.n = 0
	b.err = nil
}

// AddClick adds the click event c, as EncodeClick encodes it.
func (b *Batch) AddClick(c *Click) {
	start := b.begin()
	b.buf = EncodeClick(b.buf, c)
	b.end(start)
}

// AddEvent adds the event e, as EncodeEvent encodes it.
func (b *Batch) AddEvent(e *attribution.Event) {
	start := b.begin()
	b.buf = EncodeEvent(b.buf, e)
	b.end(start)
}

// AddEncoded adds one already encoded event, copying it. enc must be one
// whole event in EncodeEvent's format (as EncodeEvent or EncodeClick
// produce): the outbox stores it as it is, and readers decode it with
// DecodeEvent. An enc that is obviously not one (shorter than 2 bytes or of
// an unknown codec version) is refused and fails the next AppendBatch with an
// error wrapping ErrCorrupt; beyond that enc is decoded only in builds with
// the invariants tag.
func (b *Batch) AddEncoded(enc []byte) {
	if len(enc) < 2 || (enc[0] != 1 && enc[0] != codecVersion) {
		b.refuse(fmt.Errorf("outbox batch: event %d is not an encoded event: %w", b.n+1, ErrCorrupt))
		return
	}
	start := b.begin()
	b.buf = append(b.buf, enc...)
	b.end(start)
}

// begin appends the header of a frame, to be completed by end.
func (b *Batch) begin() int {
	start := len(b.buf)
	b.buf = append(b.buf, make([]byte, frameHeader)...)
	return start
}

// end completes the frame begun at start with its payload's length, or drops
// it, failing the batch, when the payload is over MaxEventBytes.
func (b *Batch) end(start int) {
	l := len(b.buf) - start - frameHeader
	if l > MaxEventBytes {
		b.buf = b.buf[:start]
		b.refuse(fmt.Errorf("outbox batch: event %d: %d bytes: %w", b.n+1, l, ErrTooLarge))
		return
	}
	binary.LittleEndian.PutUint32(b.buf[start:start+4], uint32(l))
	b.n++
}

// refuse records the first reason to fail the batch.
func (b *Batch) refuse(err error) {
	if b.err == nil {
		b.err = err
	}
}

// AppendBatch adds the events of b to the log, in order, and returns the seq
// of the last one. The records are those Append writes for the same events,
// and it behaves as Append in every respect (durable, ErrFull, ErrClosed, a
// done ctx, a poisoned Outbox, segment roll, waking Wait), except that an
// event the batch refused (over MaxEventBytes: ErrTooLarge; not an encoded
// event: ErrCorrupt) fails the call before any event of b is appended. It
// writes each record's seq and checksum into b, and does not retain b: the
// caller may Reset and reuse it once it returns.
func (o *Outbox) AppendBatch(ctx context.Context, durable bool, b *Batch) (uint64, error) {
	if b.err != nil {
		return 0, b.err
	}
	last, done, err := o.beginAppend(ctx, durable, b.n)
	if done {
		return last, err
	}
	if invariants {
		for p := 0; p < len(b.buf); {
			l := int(binary.LittleEndian.Uint32(b.buf[p:]))
			if _, err := DecodeEvent(b.buf[p+frameHeader : p+frameHeader+l]); err != nil {
				o.mu.Unlock()
				return 0, fmt.Errorf("outbox append batch: %w", err)
			}
			p += frameHeader + l
		}
	}
	if err := o.appendFramesLocked(b.buf); err != nil {
		o.mu.Unlock()
		return 0, err
	}
	return o.endAppend(durable)
}

// appendFramesLocked stamps frames (complete but for seq and CRC, as a Batch
// holds them) with seqs from nextSeq and adds them to buf as appendPayloadLocked
// would one by one: rolling the segment where it would and indexing the same
// records, but copying the frames in bulk, or, when they are many and buf is
// empty, writing them to the file without copying them at all.
func (o *Outbox) appendFramesLocked(frames []byte) error {
	active := o.segs[len(o.segs)-1]
	from := 0 // frames[from:p] are stamped and not yet copied to buf
	for p := 0; p < len(frames); {
		l := frameHeader + int(binary.LittleEndian.Uint32(frames[p:]))
		bufLen := len(o.buf) + p - from
		if active.size+int64(bufLen) >= o.opts.SegmentBytes && active.count+o.bufN > 0 {
			o.buf = append(o.buf, frames[from:p]...)
			from = p
			if err := o.rollLocked(); err != nil {
				return err
			}
			active = o.segs[len(o.segs)-1]
			bufLen = len(o.buf)
		}
		if (active.count+o.bufN)%indexEvery == 0 {
			o.bufIdx = append(o.bufIdx, int64(bufLen))
		}
		f := frames[p : p+l]
		binary.LittleEndian.PutUint64(f[8:16], o.nextSeq)
		binary.LittleEndian.PutUint32(f[4:8], crc32.Update(0, crcTable, f[8:]))
		o.bytes += int64(l)
		o.bufN++
		o.nextSeq++
		p += l
	}
	if len(o.buf) == 0 && len(frames)-from >= directBytes {
		// Write a large batch from where it is rather than copy it into buf
		// first: one write call as would come anyway, and no copy.
		if err := o.writeLocked(frames[from:]); err != nil {
			o.buf = append(o.buf, frames[from:]...) // where a failed flush leaves records
			return err
		}
		return nil
	}
	o.buf = append(o.buf, frames[from:]...)
	return nil
}

// directBytes is the size from which AppendBatch writes a batch's frames to
// the segment file directly when nothing else is buffered. It is low on
// purpose: copying each batch into buf, which grows to flushBytes (256 KB)
// before it is written, streamed a quarter megabyte of cold cache lines per
// flush through the core that also serves the redirects, and under load that
// showed up as cache misses in the kernel's copy of every HTTP answer (perf:
// the TCP send copy went from 0.4 % to 5 % of the redirect server's CPU). A
// batch of this size or more costs one write call either way.
const directBytes = 16 << 10
