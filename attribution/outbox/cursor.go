package outbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
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

// Register declares a consumer: segments are deleted only once every registered consumer's
// cursor has passed them. A consumer registers at every start; Commit also registers.
func (o *Outbox) Register(name string) {
	o.cmu.Lock()
	defer o.cmu.Unlock()
	o.registerd[name] = true
}

// Commit persists cursor name = seq (the consumer has consumed every record below seq),
// registers name, and deletes the segments wholly below the lowest registered cursor.
// The cursor file is durable when Commit returns. Cursors may move backwards (a replay).
func (o *Outbox) Commit(name string, seq uint64) error {
	if name == "" || strings.ContainsAny(name, " \n\r\t") {
		return fmt.Errorf("outbox commit cursor %q: invalid name", name)
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
	min := uint64(0)
	first := true
	for n := range o.registerd {
		c := o.cursors[n]
		if first || c < min {
			min, first = c, false
		}
	}
	o.cmu.Unlock()
	return o.truncateBelow(min)
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
		o.log.Debug("removed consumed outbox segment", "segment", s.path)
	}
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
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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
