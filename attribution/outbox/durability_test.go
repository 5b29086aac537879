package outbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// TestCursorNeverAheadOfDiskAfterKill re-execs the test binary as a child that appends one
// durable registration and 20 buffered clicks, then commits a cursor past all of them; the
// child is SIGKILLed. After reopening, a record appended durably must be readable from the
// persisted cursor: a cursor committed over buffered records that the crash lost would make
// the next records get seqs below it, and a reader starting at the cursor would never see them.
func TestCursorNeverAheadOfDiskAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCommitOverBuffered$")
	cmd.Env = append(os.Environ(), "OUTBOX_COMMIT_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var committed uint64
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "committed %d", &committed); n == 1 {
			break
		}
		t.Logf("child: %s", sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if committed == 0 {
		t.Fatal("child did not commit")
	}

	o := newTestOutbox(t, Options{Dir: dir})
	cur := o.Cursor("submitter")
	if cur != committed {
		t.Fatalf("cursor after kill %d, child committed %d", cur, committed)
	}
	ev := testEvent(1000)
	ev.ID = "after-kill"
	seq := mustAppend(t, o, true, ev)
	if seq < cur {
		t.Fatalf("new durable record got seq %d below the persisted cursor %d", seq, cur)
	}
	recs, err := o.Read(cur, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[len(recs)-1].Event.ID != "after-kill" {
		t.Fatalf("Read(cursor %d) = %d records; the record appended after the kill (seq %d) is not among them", cur, len(recs), seq)
	}
}

// TestHelperCommitOverBuffered is the child of TestCursorNeverAheadOfDiskAfterKill; it does
// nothing in a normal run.
func TestHelperCommitOverBuffered(t *testing.T) {
	dir := os.Getenv("OUTBOX_COMMIT_HELPER_DIR")
	if dir == "" {
		return
	}
	o, err := Open(Options{Dir: dir, SyncDelay: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("open error", err)
		os.Exit(1)
	}
	ctx := context.Background()
	o.Register("submitter")
	if _, err := o.Append(ctx, true, testEvent(0)); err != nil {
		fmt.Println("append error", err)
		os.Exit(1)
	}
	var b Batch
	for i := 0; i < 20; i++ {
		c := testClick(i)
		b.AddClick(&c)
	}
	if _, err := o.AppendBatch(ctx, false, &b); err != nil {
		fmt.Println("append batch error", err)
		os.Exit(1)
	}
	next := o.LastSeq() + 1
	if err := o.Commit("submitter", next); err != nil {
		fmt.Println("commit error", err)
		os.Exit(1)
	}
	fmt.Printf("committed %d\n", next)
	time.Sleep(time.Hour) // killed by the parent
}

// TestOpenWithCursorBeyondData covers a cursor persisted above the records on disk (records
// lost in a crash before they were durable, or a data dir written by an older build): Open
// must not hand out seqs below the cursor. The new segment starts at the cursor, leaving a
// gap that later Opens accept; a gap nobody recorded is still corruption.
func TestOpenWithCursorBeyondData(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	for i := 0; i < 30; i++ {
		mustAppend(t, o, true, testEvent(i))
	}
	if err := o.Commit("b", 5); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit("a", 31); err != nil {
		t.Fatal(err)
	}
	o.Close()
	// Lose the tail: cut the last segment in the middle of a record, as a crash before its
	// fdatasync can.
	if n := cutLastRecord(t, dir); n < 2 { // record 30 is lost
		t.Fatalf("%d segments, want several", n)
	}

	o2 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	if o2.LastSeq() != 30 {
		t.Fatalf("LastSeq after losing the tail = %d, want 30 (the cursor's next - 1)", o2.LastSeq())
	}
	ev := testEvent(100)
	ev.ID = "after-loss"
	if seq := mustAppend(t, o2, true, ev); seq != 31 {
		t.Fatalf("first seq after the loss %d, want 31", seq)
	}
	recs, err := o2.Read(o2.Cursor("a"), 10)
	if err != nil || len(recs) != 1 || recs[0].Seq != 31 || recs[0].Event.ID != "after-loss" {
		t.Fatalf("Read(cursor a) = %+v, %v", recs, err)
	}
	// A reader below the gap gets the records that exist, in order, and then the ones after it.
	recs, err = o2.Read(5, 100)
	if err != nil || len(recs) == 0 || recs[0].Seq != 5 || recs[len(recs)-1].Seq != 31 {
		t.Fatalf("Read(5) across the gap: %d records, %v", len(recs), err)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("seqs out of order across the gap: %d then %d", recs[i-1].Seq, recs[i].Seq)
		}
	}
	if last := recs[len(recs)-1]; last.Event.ID != "after-loss" || recs[len(recs)-2].Seq != 29 {
		t.Fatalf("Read(5) ends with seq %d (%q) after seq %d; want 29 then 31", last.Seq, last.Event.ID, recs[len(recs)-2].Seq)
	}
	o2.Close()

	// The gap is recorded: the dir opens again, with every record.
	o3 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	if o3.LastSeq() != 31 {
		t.Fatalf("LastSeq after reopen = %d, want 31", o3.LastSeq())
	}
	recs, err = o3.Read(31, 10)
	if err != nil || len(recs) != 1 || recs[0].Event.ID != "after-loss" {
		t.Fatalf("Read(31) after reopen = %+v, %v", recs, err)
	}
	o3.Close()

	// Without its record the same gap is a missing segment: corruption.
	gaps, _ := filepath.Glob(filepath.Join(dir, "*"+gapSuffix))
	if len(gaps) != 1 {
		t.Fatalf("gap records %v, want one", gaps)
	}
	if err := os.Remove(gaps[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with an unrecorded gap: %v, want ErrCorrupt", err)
	}
}

// TestPersistedCursorsHoldSegments: a cursor in the cursor file keeps the segments it needs
// even when no consumer registered it in this process (a node started without a database
// still has the replicator's cursor from an earlier run), until DropCursor drops it; and Read
// below the oldest kept record fails instead of skipping records.
func TestPersistedCursorsHoldSegments(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	o.Register("submitter")
	o.Register("replicator")
	for i := 0; i < 200; i++ {
		mustAppend(t, o, false, testEvent(i))
	}
	if err := o.Commit("replicator", 10); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o2 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	o2.Register("submitter") // the replicator does not run this time
	if err := o2.Commit("submitter", o2.LastSeq()+1); err != nil {
		t.Fatal(err)
	}
	recs, err := o2.Read(10, 5)
	if err != nil || len(recs) != 5 || recs[0].Seq != 10 {
		t.Fatalf("Read(10) at the replicator's persisted cursor: %d records from %v, %v", len(recs), firstSeqOf(recs), err)
	}
	if o2.FirstSeq() != 1 {
		t.Fatalf("FirstSeq %d: segments the persisted cursor needs were deleted", o2.FirstSeq())
	}
	if err := o2.DropCursor("replicator"); err != nil {
		t.Fatal(err)
	}
	if o2.Cursor("replicator") != 0 {
		t.Fatalf("cursor after DropCursor = %d", o2.Cursor("replicator"))
	}
	if o2.FirstSeq() <= 10 {
		t.Fatalf("FirstSeq %d after the only lagging cursor was dropped", o2.FirstSeq())
	}
	if _, err := o2.Read(10, 5); !errors.Is(err, ErrBelowFirst) {
		t.Fatalf("Read below the oldest kept record: %v, want ErrBelowFirst", err)
	}
	if recs, err := o2.Read(0, 5); err != nil || (len(recs) > 0 && recs[0].Seq != o2.FirstSeq()) {
		// from 0 means from the start, whatever is kept
		t.Fatalf("Read(0) = %d records from %v, %v", len(recs), firstSeqOf(recs), err)
	}
	o2.Close()
	o3 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	if o3.Cursor("replicator") != 0 || o3.Cursor("submitter") != 201 {
		t.Fatalf("cursors after reopen: replicator %d submitter %d", o3.Cursor("replicator"), o3.Cursor("submitter"))
	}
	if err := o3.DropCursor("nobody"); err != nil {
		t.Fatalf("DropCursor of an unknown name: %v", err)
	}
}

func firstSeqOf(recs []Record) any {
	if len(recs) == 0 {
		return "none"
	}
	return recs[0].Seq
}

// TestSyncErrorSeenBySharedSync: when the kernel reports a writeback error of the active
// segment to a segment roll (which poisons the outbox) while a durable append's fdatasync of
// the same file is in flight and sees success, the durable append must fail too.
func TestSyncErrorSeenBySharedSync(t *testing.T) {
	inSync := make(chan struct{})
	release := make(chan struct{})
	calls := 0
	var callsMu = make(chan struct{}, 1)
	callsMu <- struct{}{}
	o := newTestOutbox(t, Options{SegmentBytes: 1024, SyncDelay: time.Hour, fsync: func(f *os.File) error {
		<-callsMu
		calls++
		n := calls
		callsMu <- struct{}{}
		switch n {
		case 1: // the durable append's sync: it sees no error
			close(inSync)
			<-release
			return nil
		case 2: // the roll's sync of the same file: the kernel reports the error here
			return syscall.EIO
		}
		return nil
	}})
	done := make(chan error, 1)
	go func() {
		_, err := o.Append(context.Background(), true, testEvent(0))
		done <- err
	}()
	<-inSync
	var err error
	for i := 1; i < 50 && err == nil; i++ {
		_, err = o.Append(context.Background(), false, testEvent(i))
	}
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("appends that roll the segment: %v, want EIO", err)
	}
	close(release)
	if err := <-done; err == nil {
		t.Fatal("durable Append returned success although the write-back of its segment failed")
	}
}

// TestAppendAllOrNothing: an Append whose events include one over MaxEventBytes fails with
// ErrTooLarge and appends none of them.
func TestAppendAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir})
	big := testEvent(1)
	big.UA = string(bytes.Repeat([]byte("u"), MaxEventBytes))
	for _, durable := range []bool{true, false} {
		if _, err := o.Append(context.Background(), durable, testEvent(0), big); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Append(ok, too large): %v, want ErrTooLarge", err)
		}
		if o.LastSeq() != 0 {
			t.Fatalf("LastSeq %d after a failed Append: part of it was appended", o.LastSeq())
		}
	}
	if seq := mustAppend(t, o, true, testEvent(0)); seq != 1 {
		t.Fatalf("next seq %d, want 1", seq)
	}
	o.Close()
	checkAll(t, newTestOutbox(t, Options{Dir: dir}), 1)
}

// TestReadCorruptLengthBounded: a record whose length field is corrupted after Open (so the
// scan at Open did not see it) makes Read fail with ErrCorrupt without allocating the bogus
// length.
func TestReadCorruptLengthBounded(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir})
	var evs []attribution.Event
	for i := 0; i < 5; i++ {
		evs = append(evs, testEvent(i))
	}
	mustAppend(t, o, true, evs...)
	path := filepath.Join(dir, segName(1))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], 256<<20) // 256 MiB, far past the file's end
	if _, err := f.WriteAt(l[:], 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = o.Read(1, 10)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a record with a corrupt length: %v, want ErrCorrupt", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("Read allocated %d bytes for a corrupt length field", grew)
	}
}

// TestOpenTwiceLocked: a second Open of a directory in use fails with
// ErrLocked, and succeeds once the first is closed.
func TestOpenTwiceLocked(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if o2, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		if o2 != nil {
			o2.Close()
		}
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	o2.Close()
}

// TestWaitInsideGapBlocks: after Open skipped records lost below a cursor, a
// reader whose position is inside the gap finds nothing and must then wait
// for a new record, not be told at once that there are records (it spun,
// reading nothing, at full CPU).
func TestWaitInsideGapBlocks(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	for i := 0; i < 30; i++ {
		mustAppend(t, o, true, testEvent(i))
	}
	if err := o.Commit("replicator", 20); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit("submitter", 31); err != nil {
		t.Fatal(err)
	}
	o.Close()
	cutLastRecord(t, dir) // record 30 is lost; the submitter cursor had passed it
	o2 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	if recs, err := o2.Read(30, 100); err != nil || len(recs) != 0 {
		t.Fatalf("Read(30) = %d records, %v; want none", len(recs), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := o2.Wait(ctx, 29); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(29) inside the gap = %v, want to block until the deadline", err)
	}
	seq := mustAppend(t, o2, true, testEvent(99))
	if seq != 31 {
		t.Fatalf("new record got seq %d, want 31 (at the cursor)", seq)
	}
	if err := o2.Wait(context.Background(), 29); err != nil {
		t.Fatalf("Wait(29) after a new record: %v", err)
	}
	if recs, err := o2.Read(30, 100); err != nil || len(recs) != 1 || recs[0].Seq != 31 {
		t.Fatalf("Read(30) after the new record = %+v, %v", recs, err)
	}
}

// cutLastRecord cuts the last 7 bytes of the newest segment in dir, inside its
// last record, as a crash before its fdatasync can, and returns the number of
// segments.
func cutLastRecord(t *testing.T, dir string) int {
	t.Helper()
	firsts, err := listSegments(dir)
	if err != nil || len(firsts) == 0 {
		t.Fatalf("segments %v, %v", firsts, err)
	}
	last := filepath.Join(dir, segName(firsts[len(firsts)-1]))
	st, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	truncate(t, last, st.Size()-7)
	return len(firsts)
}
