// Package outbox is a node's durable, append-only log of attribution events.
//
// Records are kept in segment files in one directory, each record framed with its length,
// a CRC32C and its sequence number. Sequence numbers start at 1 and are monotonic across
// restarts, and dense but for one case: when a crash lost records that a persisted cursor
// had already passed (they were not durable when it was committed, as the cursors of older
// builds could be, or the disk lost them), Open starts the next records at that cursor, so
// no new record ever gets a seq below a cursor, and records the gap in a file of its own
// (NNN.gap, beside the segment NNN.seg that follows it) so that later Opens accept it.
// Durable appends return after an fdatasync that concurrent durable appends share (group
// commit); other appends are buffered and synced within Options.SyncDelay.
// Consumers keep named cursors, persisted atomically; a cursor is committed only over
// records already on stable storage. Every cursor in the cursor file counts, whether or
// not a consumer registered it in this process, until DropCursor drops it: segments wholly
// below the lowest cursor (registered consumers without a cursor count as 0) are deleted.
// At Open a torn tail record left by a crash is cut away; corruption anywhere else is an
// error.
package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// Errors returned by the Outbox.
var (
	// ErrFull is returned by non-durable appends while the retained bytes exceed Options.MaxBytes.
	ErrFull = errors.New("outbox: full")
	// ErrClosed is returned by calls after Close.
	ErrClosed = errors.New("outbox: closed")
	// ErrTooLarge is returned when one event encodes to more than MaxEventBytes.
	ErrTooLarge = errors.New("outbox: event too large")
	// ErrBelowFirst is returned (wrapped) by Read from a seq below FirstSeq: those records
	// were deleted (every cursor had passed them) or lost. The caller decides whether to go
	// on from FirstSeq.
	ErrBelowFirst = errors.New("outbox: records below the oldest kept record are gone")
	// ErrLocked is returned (wrapped) by Open when another process, or another open
	// Outbox, uses the directory.
	ErrLocked = errors.New("outbox: directory in use by another process")
)

// Defaults for zero Options fields.
const (
	DefaultSegmentBytes = 64 << 20
	DefaultMaxBytes     = 1 << 30
	DefaultSyncDelay    = 200 * time.Millisecond
	// flushBytes is the size at which buffered non-durable records are written to the file.
	flushBytes = 256 << 10
)

// Options configure Open.
type Options struct {
	Dir          string        // directory of the log; created if missing
	SegmentBytes int64         // a segment is closed once it reaches this size; 0 = 64 MiB
	MaxBytes     int64         // bound on retained bytes for non-durable appends; 0 = 1 GiB
	SyncDelay    time.Duration // non-durable records are synced within this window; 0 = 200 ms
	Logger       *slog.Logger  // nil = slog.Default()

	fsync func(*os.File) error // tests: replaces fdatasync of segment files
}

// Record is one event with its sequence number.
type Record struct {
	Seq   uint64
	Event attribution.Event
}

// Outbox is an open log. All methods are safe for concurrent use. The Outbox owns one
// background goroutine (the periodic syncer) that Close stops and waits for.
type Outbox struct {
	opts Options
	log  *slog.Logger

	// Group commit: one sync runs at a time; callers whose records it covers all wake
	// when syncDone is closed. smu guards synced, syncing and syncDone; it is taken before mu.
	smu      sync.Mutex
	synced   uint64 // highest seq known durable
	syncing  bool   // a sync is in flight
	syncDone chan struct{}

	mu      sync.Mutex
	segs    []*segment // ascending; the last is active
	buf     []byte     // encoded frames not yet written to the active segment
	bufN    uint64     // records in buf
	bufIdx  []int64    // index offsets (relative to active size) for records in buf
	nextSeq uint64
	// After Open skipped a gap up to a cursor (skipToCursors), gapEnd is the
	// seq the records start again at and lastBeforeGap the last record
	// before it: until a record is appended at gapEnd, the newest record is
	// lastBeforeGap, not nextSeq-1 (Wait must not report records that are
	// not there, or a reader inside the gap spins).
	gapEnd, lastBeforeGap uint64
	bytes                 int64         // retained bytes: files + buf
	notify                chan struct{} // closed and replaced by the next append when waiting is set
	waiting               bool
	err                   error // sticky write error
	closed                bool
	// filesClosed is set once Close closed the segment files: a sync started later (a
	// Commit racing Close) fails with ErrClosed instead of writing to a closed file.
	filesClosed bool
	scratch     []byte

	cmu       sync.Mutex // guards cursors, registerd, warned and the cursor file
	cursors   map[string]uint64
	registerd map[string]bool
	warned    map[string]bool // persisted cursors, not registered here, already logged as holding segments

	lock *os.File // holds the directory's advisory lock until Close

	stop chan struct{}
	wg   sync.WaitGroup
}

// Open opens or creates the outbox in opts.Dir, checking every record. A torn or corrupt
// tail record of the last segment is truncated away with a log line; corruption before the
// tail is an error wrapping ErrCorrupt.
func Open(opts Options) (*Outbox, error) {
	if opts.Dir == "" {
		return nil, errors.New("outbox: open: empty Dir")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SyncDelay <= 0 {
		opts.SyncDelay = DefaultSyncDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.fsync == nil {
		opts.fsync = fdatasync
	}
	o := &Outbox{
		opts:      opts,
		log:       opts.Logger.With("component", "outbox", "dir", opts.Dir),
		notify:    make(chan struct{}),
		cursors:   map[string]uint64{},
		registerd: map[string]bool{},
		warned:    map[string]bool{},
		stop:      make(chan struct{}),
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create outbox dir %q: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open outbox %q: %w", opts.Dir, err)
	}
	o.lock = lock
	if err := o.loadCursors(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := o.openSegments(); err != nil {
		o.closeFiles()
		lock.Close()
		return nil, err
	}
	o.synced = o.nextSeq - 1
	o.syncDone = make(chan struct{})
	o.wg.Add(1)
	go o.syncLoop()
	return o, nil
}

func (o *Outbox) openSegments() error {
	firsts, err := listSegments(o.opts.Dir)
	if err != nil {
		return err
	}
	gaps, err := listGaps(o.opts.Dir)
	if err != nil {
		return err
	}
	o.nextSeq = 1
	for i, first := range firsts {
		path := filepath.Join(o.opts.Dir, segName(first))
		if i > 0 && first != o.nextSeq {
			if first < o.nextSeq || !gaps[first] {
				return fmt.Errorf("segment %q: starts at seq %d, previous segment ends at %d: %w", path, first, o.nextSeq-1, ErrCorrupt)
			}
			o.log.Warn("outbox segment follows a recorded gap: records lost in an earlier crash",
				"segment", path, "missing_from", o.nextSeq, "missing_to", first-1)
		}
		res, err := scanSegment(path, first)
		if err != nil {
			return err
		}
		last := i == len(firsts)-1
		if res.tornAt >= 0 && !last {
			return fmt.Errorf("segment %q: bad record at offset %d before the last segment: %w", path, res.tornAt, ErrCorrupt)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open segment %q: %w", path, err)
		}
		if res.tornAt >= 0 {
			o.log.Warn("truncating torn tail of outbox segment", "segment", path, "offset", res.tornAt, "records_kept", res.count)
			if err := f.Truncate(res.tornAt); err != nil {
				f.Close()
				return fmt.Errorf("truncate segment %q at %d: %w", path, res.tornAt, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("sync segment %q: %w", path, err)
			}
		}
		o.segs = append(o.segs, &segment{first: first, path: path, f: f, size: res.validEnd, count: res.count, index: res.index})
		o.bytes += res.validEnd
		o.nextSeq = first + res.count
	}
	if err := o.skipToCursors(); err != nil {
		return err
	}
	if len(o.segs) == 0 {
		if err := o.newSegmentLocked(); err != nil {
			return err
		}
	}
	o.removeStaleGaps(gaps)
	return nil
}

// skipToCursors raises nextSeq to the highest persisted cursor when the records on disk
// end below it, so that no new record gets a seq below a cursor (a reader starting at the
// cursor would never see it). Records between were lost: the cursor was committed over
// them before they were durable (older builds), or the files were lost. Unless there are
// no segments left, the new active segment then follows a gap, which is recorded first.
// Called by Open only.
func (o *Outbox) skipToCursors() error {
	var top uint64
	var name string
	for n, c := range o.cursors {
		if c > top {
			top, name = c, n
		}
	}
	if top <= o.nextSeq {
		return nil
	}
	if n := len(o.segs); n > 0 && o.segs[n-1].count == 0 {
		// An empty active segment starts at nextSeq: remove it rather than keep it before the gap.
		s := o.segs[n-1]
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("remove empty segment %q: %w", s.path, err)
		}
		o.segs = o.segs[:n-1]
	}
	o.log.Error("outbox cursor is beyond the records on disk: records it passed were lost; new records start at the cursor",
		"cursor", name, "cursor_seq", top, "missing_from", o.nextSeq, "missing_to", top-1)
	if len(o.segs) > 0 {
		if err := writeGap(o.opts.Dir, o.nextSeq, top); err != nil {
			return err
		}
	}
	o.gapEnd, o.lastBeforeGap = top, o.nextSeq-1
	o.nextSeq = top
	return o.newSegmentLocked()
}

// removeStaleGaps removes the gap records that no longer sit between two kept segments
// (best effort: a stale record is harmless, as only a segment starting at its seq after a
// shorter predecessor would use it).
func (o *Outbox) removeStaleGaps(gaps map[uint64]bool) {
	for first := range gaps {
		keep := false
		for i, s := range o.segs {
			if s.first == first && i > 0 {
				keep = true
			}
		}
		if !keep {
			removeGap(o.opts.Dir, first)
		}
	}
}

// newSegmentLocked creates an empty active segment starting at nextSeq. Caller holds mu (or is Open).
func (o *Outbox) newSegmentLocked() error {
	path := filepath.Join(o.opts.Dir, segName(o.nextSeq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create segment %q: %w", path, err)
	}
	if err := syncDir(o.opts.Dir); err != nil {
		f.Close()
		return err
	}
	o.segs = append(o.segs, &segment{first: o.nextSeq, path: path, f: f})
	return nil
}

// Append adds evs to the log and returns the seq of the last one. With durable set it
// returns only once the records are on stable storage; concurrent durable appends share
// one fdatasync. Without it the records are buffered and synced within SyncDelay, and the
// call fails with ErrFull while the retained bytes exceed MaxBytes (durable appends are
// always accepted). A ctx that is done before the records are written fails the call.
func (o *Outbox) Append(ctx context.Context, durable bool, evs ...attribution.Event) (uint64, error) {
	last, done, err := o.beginAppend(ctx, durable, len(evs))
	if done {
		return last, err
	}
	// Encode and check every event before any is buffered, so that a failed
	// Append leaves nothing of its events in the log.
	frames := o.scratch[:0]
	for i := range evs {
		start := len(frames)
		frames = slices.Grow(frames, frameHeader)[:start+frameHeader] // seq and CRC are stamped by appendFramesLocked
		frames = EncodeEvent(frames, &evs[i])
		l := len(frames) - start - frameHeader
		if l > MaxEventBytes {
			o.keepScratch(frames)
			o.mu.Unlock()
			return 0, fmt.Errorf("outbox append event %q (%d of %d): %d bytes: %w", evs[i].ID, i+1, len(evs), l, ErrTooLarge)
		}
		binary.LittleEndian.PutUint32(frames[start:start+4], uint32(l))
	}
	err = o.appendFramesLocked(frames)
	o.keepScratch(frames)
	if err != nil {
		o.mu.Unlock()
		return 0, err
	}
	return o.endAppend(durable)
}

// keepScratch keeps b's memory for the next Append unless it grew large. Caller holds mu.
func (o *Outbox) keepScratch(b []byte) {
	if cap(b) > 4*flushBytes {
		b = nil
	}
	o.scratch = b[:0]
}

// beginAppend starts an append of n records: it checks ctx, Close, a sticky
// write error and, for a non-durable append, the bound, and returns holding mu.
// With done set it has released mu and the append is over: it failed with err,
// or there was nothing to append (n == 0) and last is the last seq.
func (o *Outbox) beginAppend(ctx context.Context, durable bool, n int) (last uint64, done bool, err error) {
	if err := ctx.Err(); err != nil {
		return 0, true, fmt.Errorf("outbox append: %w", err)
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return 0, true, ErrClosed
	}
	if o.err != nil {
		err := o.err
		o.mu.Unlock()
		return 0, true, err
	}
	if n == 0 {
		last := o.nextSeq - 1
		o.mu.Unlock()
		return last, true, nil
	}
	if !durable && o.bytes >= o.opts.MaxBytes {
		o.mu.Unlock()
		return 0, true, ErrFull
	}
	return 0, false, nil
}

// endAppend finishes an append begun by beginAppend once its records are in
// buf: it writes buf out if it is large, wakes waiters, releases mu and, for a
// durable append, waits for the sync that covers the records. It returns the
// seq of the last record appended.
func (o *Outbox) endAppend(durable bool) (uint64, error) {
	last := o.nextSeq - 1
	if len(o.buf) >= flushBytes { // durable records are written by the sync that covers them
		if err := o.flushLocked(); err != nil {
			o.mu.Unlock()
			return 0, err
		}
	}
	if o.waiting {
		close(o.notify)
		o.notify = make(chan struct{})
		o.waiting = false
	}
	o.mu.Unlock()
	if !durable {
		return last, nil
	}
	if err := o.syncTo(last); err != nil {
		return 0, err
	}
	return last, nil
}

// flushLocked writes buf to the active segment. A failed write poisons the Outbox.
func (o *Outbox) flushLocked() error {
	if len(o.buf) == 0 {
		return nil
	}
	if err := o.writeLocked(o.buf); err != nil {
		return err
	}
	o.buf = o.buf[:0]
	if cap(o.buf) > 4*flushBytes {
		o.buf = nil
	}
	return nil
}

// writeLocked writes the frames of the bufN records counted as buffered, and
// indexed in bufIdx, to the end of the active segment: buf, or frames that
// would have been copied into an empty buf. A failed write poisons the Outbox.
func (o *Outbox) writeLocked(frames []byte) error {
	active := o.segs[len(o.segs)-1]
	if _, err := active.f.WriteAt(frames, active.size); err != nil {
		o.err = fmt.Errorf("outbox write %q: %w", active.path, err)
		return o.err
	}
	for _, rel := range o.bufIdx {
		active.index = append(active.index, active.size+rel)
	}
	active.size += int64(len(frames))
	active.count += o.bufN
	o.bufN = 0
	o.bufIdx = o.bufIdx[:0]
	return nil
}

// rollLocked flushes and syncs the active segment and starts a new one.
func (o *Outbox) rollLocked() error {
	if err := o.flushLocked(); err != nil {
		return err
	}
	active := o.segs[len(o.segs)-1]
	if err := o.opts.fsync(active.f); err != nil {
		o.err = fmt.Errorf("outbox sync %q: %w", active.path, err)
		return o.err
	}
	if err := o.newSegmentLocked(); err != nil {
		o.err = err
		return err
	}
	return nil
}

// syncTo makes every record up to seq durable. Concurrent callers share syncs: if a sync is
// in flight the caller waits for it (a broadcast), and the first caller it did not cover
// starts the next one, which covers every record written meanwhile.
func (o *Outbox) syncTo(seq uint64) error {
	o.smu.Lock()
	for o.synced < seq {
		if o.syncing {
			ch := o.syncDone
			o.smu.Unlock()
			<-ch
			o.smu.Lock()
			continue
		}
		o.syncing = true
		o.smu.Unlock()
		target, err := o.doSync()
		o.smu.Lock()
		o.syncing = false
		close(o.syncDone)
		o.syncDone = make(chan struct{})
		if err != nil {
			o.smu.Unlock()
			return err
		}
		if target > o.synced {
			o.synced = target
		}
	}
	o.smu.Unlock()
	return nil
}

// doSync writes buf and fdatasyncs the active segment, returning the last seq it covers.
// Earlier segments were synced when they were rolled. Only one doSync runs at a time. It
// fails if the Outbox is poisoned when its fdatasync returns, even if that call succeeded.
func (o *Outbox) doSync() (uint64, error) {
	o.mu.Lock()
	if o.err != nil {
		err := o.err
		o.mu.Unlock()
		return 0, err
	}
	if o.filesClosed {
		o.mu.Unlock()
		return 0, ErrClosed
	}
	if err := o.flushLocked(); err != nil {
		o.mu.Unlock()
		return 0, err
	}
	target := o.nextSeq - 1
	active := o.segs[len(o.segs)-1]
	active.refs++
	o.mu.Unlock()

	err := o.opts.fsync(active.f)

	o.mu.Lock()
	o.releaseLocked(active)
	if err != nil {
		o.err = fmt.Errorf("outbox sync %q: %w", active.path, err)
		err = o.err
	} else if o.err != nil {
		// A segment roll synced the same file meanwhile, under mu, and failed: the kernel
		// may report a writeback error to one caller only, so this sync's success does
		// not mean the records it covers are durable.
		err = o.err
	}
	o.mu.Unlock()
	return target, err
}

// releaseLocked drops a reference to s, closing its file if it was removed.
func (o *Outbox) releaseLocked(s *segment) {
	s.refs--
	if s.dead && s.refs == 0 {
		s.f.Close()
	}
}

// syncLoop syncs buffered non-durable records every SyncDelay until Close.
func (o *Outbox) syncLoop() {
	defer o.wg.Done()
	t := time.NewTicker(o.opts.SyncDelay)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			if err := o.syncTo(o.LastSeq()); err != nil {
				o.log.Error("outbox periodic sync", "err", err)
			}
		}
	}
}

// Read returns up to max records with Seq >= from, in order. It returns fewer (or none)
// when the log ends. A from below FirstSeq fails with an error wrapping ErrBelowFirst
// rather than skip the records that are gone; from 0 (no cursor yet) reads from FirstSeq.
// Across a gap left by records lost in a crash (see the package doc) the records simply
// continue at a higher seq: callers that care compare the first seq they get with from.
func (o *Outbox) Read(from uint64, max int) ([]Record, error) {
	if max <= 0 {
		return nil, nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrClosed
	}
	if first := o.segs[0].first; from < first {
		if from != 0 {
			o.mu.Unlock()
			return nil, fmt.Errorf("outbox read from %d: the oldest kept record is %d: %w", from, first, ErrBelowFirst)
		}
		from = first
	}
	if err := o.flushLocked(); err != nil {
		o.mu.Unlock()
		return nil, err
	}
	type span struct {
		s        *segment
		off, end int64
	}
	var spans []span
	var avail uint64
	i := sort.Search(len(o.segs), func(i int) bool { return o.segs[i].first+o.segs[i].count > from })
	for ; i < len(o.segs); i++ {
		s := o.segs[i]
		if s.count == 0 {
			continue
		}
		var off int64
		if from > s.first {
			k := (from - s.first) / indexEvery
			off = s.index[k]
		}
		s.refs++
		spans = append(spans, span{s: s, off: off, end: s.size})
		start := max64(from, s.first)
		avail += s.first + s.count - start
		if avail >= uint64(max) {
			break
		}
	}
	o.mu.Unlock()

	var out []Record
	var err error
	for _, sp := range spans {
		if err == nil && len(out) < max {
			out, err = readRecords(sp.s.f, sp.off, sp.end, from, max, out)
		}
	}
	o.mu.Lock()
	for _, sp := range spans {
		o.releaseLocked(sp.s)
	}
	o.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("outbox read from %d: %w", from, err)
	}
	return out, nil
}

// Wait blocks until a record with Seq > after exists, ctx is done (returning its error)
// or the Outbox is closed (ErrClosed).
func (o *Outbox) Wait(ctx context.Context, after uint64) error {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		last := o.nextSeq - 1
		if o.nextSeq == o.gapEnd {
			last = o.lastBeforeGap
		}
		if last > after {
			o.mu.Unlock()
			return nil
		}
		ch := o.notify
		o.waiting = true
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.stop:
			return ErrClosed
		case <-ch:
		}
	}
}

// FirstSeq returns the seq of the oldest kept record, the lowest from that Read accepts
// (when the log holds no record, the seq the next one will get).
func (o *Outbox) FirstSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.segs[0].first
}

// LastSeq returns the seq of the last appended record (0 if none ever was): the next record
// gets LastSeq()+1.
func (o *Outbox) LastSeq() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nextSeq - 1
}

// Bytes returns the retained bytes: segment files plus buffered records.
func (o *Outbox) Bytes() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// Close writes and syncs buffered records, stops the syncer and closes the files.
// It is idempotent; later calls return nil.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true // no appends from here on
	last := o.nextSeq - 1
	close(o.stop)
	o.mu.Unlock()
	o.wg.Wait()
	err := o.syncTo(last)
	o.mu.Lock()
	o.filesClosed = true
	o.closeFiles()
	o.mu.Unlock()
	o.lock.Close() // releases the directory to the next process
	if err != nil {
		return fmt.Errorf("outbox close: %w", err)
	}
	return nil
}

func (o *Outbox) closeFiles() {
	for _, s := range o.segs {
		s.dead = true
		if s.refs == 0 {
			s.f.Close()
		}
	}
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
