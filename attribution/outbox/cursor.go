package outbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// cursorFile holds the named cursors, one "name seq" line each, then a "crc N" line over the
// lines before it. It is replaced atomically (temp file, fsync, rename, fsync dir).
const cursorFile = "cursors"

// Cursor returns the persisted cursor of the named consumer: the seq it will read next
// (records below it are consumed). It is 0 for an unknown name.
func (o *Outbox) Cursor(name string) uint64 {
	o.cmu.Lock()
	defer o.cmu.Unlock()
	return o.cursors[name]
}

// Cursors returns a copy of the persisted cursors, by consumer name.
func (o *Outbox) Cursors() map[string]uint64 {
	o.cmu.Lock()
	defer o.cmu.Unlock()
	return maps.Clone(o.cursors)
}

// Register declares a consumer: segments are deleted only once every registered consumer's
// cursor has passed them (a registered consumer without a cursor holds every segment). A
// consumer registers at every start; Commit also registers. A cursor in the cursor file
// holds the segments it needs whether or not its consumer registered in this process,
// until DropCursor drops it.
func (o *Outbox) Register(name string) {
	o.cmu.Lock()
	defer o.cmu.Unlock()
	o.registerd[name] = true
}

// Commit persists cursor name = seq (the consumer has consumed every record below seq),
// registers name, and deletes the segments wholly below the lowest cursor. It first makes
// every record below seq durable, so that a cursor is never ahead of the records on stable
// storage (after a crash, a new record could otherwise get a seq below the cursor). The
// cursor file is durable when Commit returns. Cursors may move backwards (a replay).
func (o *Outbox) Commit(name string, seq uint64) error {
	if err := checkCursorName(name); err != nil {
		return fmt.Errorf("outbox commit cursor %q: %w", name, err)
	}
	o.mu.Lock()
	closed, next := o.closed, o.nextSeq
	o.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if seq > next {
		return fmt.Errorf("outbox commit cursor %q = %d: beyond the next seq %d", name, seq, next)
	}
	if seq > 1 {
		if err := o.syncTo(seq - 1); err != nil {
			return fmt.Errorf("outbox commit cursor %q = %d: %w", name, seq, err)
		}
	}
	o.cmu.Lock()
	old, had := o.cursors[name]
	o.cursors[name] = seq
	o.registerd[name] = true
	if err := o.saveCursorsLocked(); err != nil {
		if had {
			o.cursors[name] = old
		} else {
			delete(o.cursors, name)
		}
		o.cmu.Unlock()
		return err
	}
	low, ok := o.lowCursorLocked()
	o.cmu.Unlock()
	if !ok {
		return nil
	}
	return o.truncateBelow(low)
}

// DropCursor forgets the named consumer: its cursor leaves the cursor file (durably, when
// DropCursor returns) and it is no longer registered, so the segments only it still needed
// are deleted. Use it for a consumer that is gone for good (a node that stops replicating
// to a database); while its cursor is persisted it keeps the outbox from shrinking. An
// unknown name is not an error.
func (o *Outbox) DropCursor(name string) error {
	if err := checkCursorName(name); err != nil {
		return fmt.Errorf("outbox drop cursor %q: %w", name, err)
	}
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return ErrClosed
	}
	o.cmu.Lock()
	old, had := o.cursors[name]
	wasRegistered := o.registerd[name]
	delete(o.cursors, name)
	delete(o.registerd, name)
	delete(o.warned, name)
	if had {
		if err := o.saveCursorsLocked(); err != nil {
			o.cursors[name] = old
			if wasRegistered {
				o.registerd[name] = true
			}
			o.cmu.Unlock()
			return fmt.Errorf("outbox drop cursor %q: %w", name, err)
		}
		o.log.Info("dropped outbox cursor", "cursor", name, "seq", old)
	}
	low, ok := o.lowCursorLocked()
	o.cmu.Unlock()
	if !ok {
		return nil
	}
	return o.truncateBelow(low)
}

// lowCursorLocked returns the lowest cursor of every persisted cursor and every registered
// consumer (0 for one without a cursor), and false when there is none (then nothing may be
// deleted). A persisted cursor that no consumer registered in this process and that alone
// holds segments back is logged once. Caller holds cmu.
func (o *Outbox) lowCursorLocked() (uint64, bool) {
	var low, lowRegistered uint64
	var lowName string
	first, firstRegistered := true, true
	for n, c := range o.cursors {
		if first || c < low {
			low, lowName, first = c, n, false
		}
	}
	for n := range o.registerd {
		c := o.cursors[n]
		if first || c < low {
			low, lowName, first = c, n, false
		}
		if firstRegistered || c < lowRegistered {
			lowRegistered, firstRegistered = c, false
		}
	}
	if first {
		return 0, false
	}
	if !o.registerd[lowName] && (firstRegistered || low < lowRegistered) && !o.warned[lowName] {
		o.warned[lowName] = true
		o.log.Warn("outbox cursor persisted by an earlier run but not registered by any consumer now keeps consumed segments from being deleted; if that consumer is gone for good, drop the cursor (Outbox.DropCursor)",
			"cursor", lowName, "seq", low)
	}
	return low, true
}

func checkCursorName(name string) error {
	if name == "" || strings.ContainsAny(name, " \n\r\t") {
		return errors.New("invalid cursor name")
	}
	return nil
}

// truncateBelow deletes the segments whose records are all below seq, never the active one.
func (o *Outbox) truncateBelow(seq uint64) error {
	o.mu.Lock()
	var drop []*segment
	for len(o.segs) > 1 && o.segs[1].first <= seq {
		s := o.segs[0]
		o.segs = o.segs[1:]
		o.bytes -= s.size
		drop = append(drop, s)
	}
	o.mu.Unlock()
	if len(drop) == 0 {
		return nil
	}
	var errs []error
	for _, s := range drop {
		if err := os.Remove(s.path); err != nil {
			errs = append(errs, fmt.Errorf("remove segment %q: %w", s.path, err))
		}
		removeGap(o.opts.Dir, s.first)
		o.log.Debug("removed consumed outbox segment", "segment", s.path)
	}
	o.mu.Lock()
	oldest := o.segs[0].first
	o.mu.Unlock()
	removeGap(o.opts.Dir, oldest) // a gap before the oldest segment needs no record
	o.mu.Lock()
	for _, s := range drop {
		s.dead = true
		if s.refs == 0 {
			s.f.Close()
		}
	}
	o.mu.Unlock()
	if err := syncDir(o.opts.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Outbox) saveCursorsLocked() error {
	names := make([]string, 0, len(o.cursors))
	for n := range o.cursors {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "%s %d\n", n, o.cursors[n])
	}
	fmt.Fprintf(&b, "crc %d\n", crc32.Checksum(b.Bytes(), crcTable))
	path := filepath.Join(o.opts.Dir, cursorFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create cursor file %q: %w", tmp, err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write cursor file %q: %w", tmp, err)
	}
	if err := fdatasync(f); err != nil {
		f.Close()
		return fmt.Errorf("sync cursor file %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close cursor file %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename cursor file %q: %w", tmp, err)
	}
	return syncDir(o.opts.Dir)
}

func (o *Outbox) loadCursors() error {
	path := filepath.Join(o.opts.Dir, cursorFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read cursor file %q: %w", path, err)
	}
	m, err := parseCursors(data)
	if err != nil {
		return fmt.Errorf("cursor file %q: %w", path, err)
	}
	o.cursors = m
	return nil
}

// parseCursors decodes the cursor file format written by saveCursorsLocked.
func parseCursors(data []byte) (map[string]uint64, error) {
	i := bytes.LastIndex(data, []byte("crc "))
	if i < 0 || (i > 0 && data[i-1] != '\n') {
		return nil, fmt.Errorf("no checksum line: %w", ErrCorrupt)
	}
	want, err := strconv.ParseUint(strings.TrimSuffix(string(data[i+4:]), "\n"), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("checksum line: %w", ErrCorrupt)
	}
	if crc32.Checksum(data[:i], crcTable) != uint32(want) {
		return nil, fmt.Errorf("checksum mismatch: %w", ErrCorrupt)
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data[:i]))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || name == "" {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), ErrCorrupt)
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), ErrCorrupt)
		}
		m[name] = seq
	}
	return m, nil
}
