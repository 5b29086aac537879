package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Frame layout on disk, little endian:
//
//	payload length uint32 | CRC32C(seq ‖ payload) uint32 | seq uint64 | payload
//
// where payload is EncodeEvent's output.
const (
	frameHeader = 16
	// MaxEventBytes bounds the encoded size of one event.
	MaxEventBytes = 1 << 20
	// indexEvery is the spacing of the sparse in-memory offset index of a segment.
	indexEvery = 128
	segSuffix  = ".seg"
	// gapSuffix names a gap record: NNN.gap says that the segment NNN.seg may start above
	// the end of the segment before it (records lost in a crash that a cursor had passed).
	// Its content is a line for people ("refrouter outbox gap v1 missing A..B"); only its
	// name is read. Builds older than gap records refuse such a directory as corrupt.
	gapSuffix = ".gap"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// segment is one file of the log holding the records first..first+count-1.
// Fields other than first, path and f are guarded by Outbox.mu.
type segment struct {
	first uint64
	path  string
	f     *os.File
	size  int64   // bytes written to f (excluding Outbox.buf)
	count uint64  // records in the file (excluding Outbox.buf)
	index []int64 // index[k] = offset of record first+k*indexEvery
	refs  int     // readers/syncers holding f
	dead  bool    // removed from the log; close f when refs drops to 0
}

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

// appendFrame appends the frame of (seq, payload) to dst. It writes the header in
// place (a header array of its own would escape to the heap through crc32) and
// takes the CRC of seq and payload, adjacent in the frame, in one pass.
func appendFrame(dst []byte, seq uint64, payload []byte) []byte {
	start := len(dst)
	dst = slices.Grow(dst, frameHeader+len(payload))[:start+frameHeader]
	h := dst[start : start+frameHeader]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start+4:start+8], crc32.Update(0, crcTable, dst[start+8:]))
	return dst
}

// parseFrame checks the frame at the start of b. It returns the seq, the payload and the
// frame's total length, or ok=false if b does not start with a whole valid frame.
func parseFrame(b []byte) (seq uint64, payload []byte, n int, ok bool) {
	if len(b) < frameHeader {
		return 0, nil, 0, false
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	if l < 2 || l > MaxEventBytes || int64(l) > int64(len(b)-frameHeader) {
		return 0, nil, 0, false
	}
	crc := crc32.Update(0, crcTable, b[8:16])
	crc = crc32.Update(crc, crcTable, b[frameHeader:frameHeader+int(l)])
	if crc != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, nil, 0, false
	}
	return binary.LittleEndian.Uint64(b[8:16]), b[frameHeader : frameHeader+int(l)], frameHeader + int(l), true
}

// listSegments returns the first seqs of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list outbox dir %q: %w", dir, err)
	}
	var firsts []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("outbox dir %q: unexpected segment name %q: %w", dir, name, ErrCorrupt)
		}
		firsts = append(firsts, first)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	return firsts, nil
}

func gapName(first uint64) string { return fmt.Sprintf("%020d%s", first, gapSuffix) }

// listGaps returns the seqs of the gap records in dir.
func listGaps(dir string) (map[uint64]bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list outbox dir %q: %w", dir, err)
	}
	gaps := map[uint64]bool{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, gapSuffix) || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, gapSuffix), 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("outbox dir %q: unexpected gap record name %q: %w", dir, name, ErrCorrupt)
		}
		gaps[first] = true
	}
	return gaps, nil
}

// writeGap durably records that the segment starting at next follows a gap: records from
// up to next-1 are missing.
func writeGap(dir string, from, next uint64) error {
	path := filepath.Join(dir, gapName(next))
	text := fmt.Sprintf("refrouter outbox gap v1 missing %d..%d\n", from, next-1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create gap record %q: %w", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("write gap record %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close gap record %q: %w", path, err)
	}
	return syncDir(dir)
}

// removeGap removes the gap record of the segment starting at first, if any (best effort:
// a stale record is harmless).
func removeGap(dir string, first uint64) {
	_ = os.Remove(filepath.Join(dir, gapName(first)))
}

// scanResult is what scanning a segment file found.
type scanResult struct {
	count    uint64
	validEnd int64 // offset just past the last valid record
	index    []int64
	tornAt   int64 // -1 if the file ends with a whole record; else offset of the bad tail
}

// scanSegment reads a whole segment file and checks every frame's CRC and seq (payloads are
// decoded only when read, to keep Open fast). A bad frame followed by
// no valid frame with a later seq is reported as a torn tail (tornAt); a bad frame followed
// by a valid later record is corruption in the middle and an error.
func scanSegment(path string, first uint64) (scanResult, error) {
	res := scanResult{tornAt: -1}
	data, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("read segment %q: %w", path, err)
	}
	var off int64
	for off < int64(len(data)) {
		seq, _, n, ok := parseFrame(data[off:])
		want := first + res.count
		if ok && seq != want {
			return res, fmt.Errorf("segment %q offset %d: seq %d, want %d: %w", path, off, seq, want, ErrCorrupt)
		}
		if !ok {
			if later := findLaterFrame(data[off:], want); later >= 0 {
				return res, fmt.Errorf("segment %q: bad record at offset %d followed by a valid record at offset %d: %w",
					path, off, off+int64(later), ErrCorrupt)
			}
			res.tornAt = off
			break
		}
		if res.count%indexEvery == 0 {
			res.index = append(res.index, off)
		}
		res.count++
		off += int64(n)
	}
	res.validEnd = off
	return res, nil
}

// findLaterFrame returns the offset in b of a valid frame whose seq is >= want, or -1.
func findLaterFrame(b []byte, want uint64) int {
	for i := 1; i+frameHeader <= len(b); i++ {
		if seq, _, _, ok := parseFrame(b[i:]); ok && seq >= want {
			return i
		}
	}
	return -1
}

// syncDir fsyncs a directory so that created, renamed or removed entries are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %q: %w", dir, err)
	}
	return nil
}

// readRecords reads frames from f between off and end, skipping those with seq < from,
// appending at most max records to out.
func readRecords(f *os.File, off, end int64, from uint64, max int, out []Record) ([]Record, error) {
	const chunk = 256 << 10
	var buf []byte
	for off < end && len(out) < max {
		n := end - off
		if n > chunk {
			n = chunk
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("read %q at %d: %w", f.Name(), off, err)
		}
		p := 0
		for p < len(buf) && len(out) < max {
			if len(buf)-p < frameHeader {
				break
			}
			l := int(binary.LittleEndian.Uint32(buf[p : p+4]))
			if l < 2 || l > MaxEventBytes || off+int64(p+frameHeader+l) > end {
				// Checked before the length sizes a buffer: a corrupt length must not
				// allocate up to 4 GiB.
				return out, fmt.Errorf("read %q at %d: record length %d: %w", f.Name(), off+int64(p), l, ErrCorrupt)
			}
			if frameHeader+l > len(buf)-p {
				if p == 0 { // a frame larger than the chunk
					buf = make([]byte, frameHeader+l)
					if _, err := f.ReadAt(buf, off); err != nil {
						return out, fmt.Errorf("read %q at %d: %w", f.Name(), off, err)
					}
					continue
				}
				break
			}
			seq, payload, fl, ok := parseFrame(buf[p:])
			if !ok {
				return out, fmt.Errorf("read %q at %d: %w", f.Name(), off+int64(p), ErrCorrupt)
			}
			if seq >= from {
				ev, err := DecodeEvent(payload)
				if err != nil {
					return out, fmt.Errorf("read %q seq %d: %w", f.Name(), seq, err)
				}
				out = append(out, Record{Seq: seq, Event: ev})
			}
			p += fl
		}
		off += int64(p)
	}
	return out, nil
}
