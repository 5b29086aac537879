package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

func testEvent(i int) attribution.Event {
	return attribution.Event{
		ID: fmt.Sprintf("ev-%08d", i), Kind: attribution.KindRegistration, At: time.Unix(int64(1_790_000_000+i), 0).UTC(),
		Node: "hk-1", Region: "ap-east", Campaign: "spring-live", Inviter: "u1", Invitee: fmt.Sprintf("u%d", i+2),
		Device: "d-9f3", IP: "203.0.113.7", Country: "HK",
	}
}

func newTestOutbox(tb testing.TB, opts Options) *Outbox {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o, err := Open(opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { o.Close() })
	return o
}

func mustAppend(tb testing.TB, o *Outbox, durable bool, evs ...attribution.Event) uint64 {
	tb.Helper()
	seq, err := o.Append(context.Background(), durable, evs...)
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return seq
}

// checkAll reads every record from 1 and checks it holds events 0..n-1 with seqs 1..n.
func checkAll(tb testing.TB, o *Outbox, n int) {
	tb.Helper()
	recs, err := o.Read(1, n+10)
	if err != nil {
		tb.Fatalf("Read: %v", err)
	}
	if len(recs) != n {
		tb.Fatalf("read %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Event.ID != testEvent(i).ID {
			tb.Fatalf("record %d: seq %d id %q, want seq %d id %q", i, r.Seq, r.Event.ID, i+1, testEvent(i).ID)
		}
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir})
	if got := o.LastSeq(); got != 0 {
		t.Fatalf("LastSeq of empty outbox = %d", got)
	}
	var evs []attribution.Event
	for i := 0; i < 300; i++ {
		evs = append(evs, testEvent(i))
	}
	if seq := mustAppend(t, o, false, evs[:100]...); seq != 100 {
		t.Fatalf("last seq %d, want 100", seq)
	}
	if seq := mustAppend(t, o, true, evs[100:300]...); seq != 300 {
		t.Fatalf("last seq %d, want 300", seq)
	}
	recs, err := o.Read(150, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 151 || recs[0].Seq != 150 || recs[0].Event != evs[149] || recs[150].Seq != 300 {
		t.Fatalf("Read(150): %d records, first %+v", len(recs), recs[0])
	}
	recs, err = o.Read(299, 1)
	if err != nil || len(recs) != 1 || recs[0].Seq != 299 {
		t.Fatalf("Read(299, 1) = %v, %v", recs, err)
	}
	if recs, err := o.Read(301, 10); err != nil || len(recs) != 0 {
		t.Fatalf("Read past end = %v, %v", recs, err)
	}
	if o.Bytes() <= 0 {
		t.Fatalf("Bytes = %d", o.Bytes())
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := o.Append(context.Background(), true, evs[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}

	o2 := newTestOutbox(t, Options{Dir: dir})
	checkAll(t, o2, 300)
	if seq := mustAppend(t, o2, true, testEvent(300)); seq != 301 {
		t.Fatalf("seq after reopen %d, want 301", seq)
	}
}

func TestNonDurableSyncedWithinDelay(t *testing.T) {
	o := newTestOutbox(t, Options{SyncDelay: 10 * time.Millisecond})
	mustAppend(t, o, false, testEvent(0))
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.smu.Lock()
		s := o.synced
		o.smu.Unlock()
		if s == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("non-durable record not synced within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSegmentRollover(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 4096})
	const n = 1000
	for i := 0; i < n; i += 10 {
		var evs []attribution.Event
		for j := i; j < i+10; j++ {
			evs = append(evs, testEvent(j))
		}
		mustAppend(t, o, i%20 == 0, evs...)
	}
	firsts, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(firsts) < 10 {
		t.Fatalf("%d segments, want many", len(firsts))
	}
	checkAll(t, o, n)
	// Reads that start mid-segment and span segments.
	for _, from := range []uint64{1, 2, 129, 130, 257, 500, 999, 1000} {
		recs, err := o.Read(from, 300)
		if err != nil {
			t.Fatal(err)
		}
		want := min(300, n-int(from)+1)
		if len(recs) != want || recs[0].Seq != from || recs[len(recs)-1].Seq != from+uint64(want)-1 {
			t.Fatalf("Read(%d): %d records, want %d", from, len(recs), want)
		}
	}
	o.Close()
	o2 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 4096})
	checkAll(t, o2, n)
}

func TestTornTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		keep   int
	}{
		{"cut mid record", func(t *testing.T, path string, size int64) { truncate(t, path, size-7) }, 9},
		{"cut mid header", func(t *testing.T, path string, size int64) { truncate(t, path, size-lastFrameLen(t, path)+5) }, 9},
		{"cut plus garbage", func(t *testing.T, path string, size int64) {
			truncate(t, path, size-20)
			appendBytes(t, path, []byte("\xff\x00\x13garbage garbage garbage garbage"))
		}, 9},
		{"zero fill", func(t *testing.T, path string, size int64) { appendBytes(t, path, make([]byte, 4096)) }, 10},
		{"flipped byte in last", func(t *testing.T, path string, size int64) { flip(t, path, size-3) }, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := newTestOutbox(t, Options{Dir: dir})
			for i := 0; i < 10; i++ {
				mustAppend(t, o, true, testEvent(i))
			}
			o.Close()
			path := filepath.Join(dir, segName(1))
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, path, st.Size())
			o2 := newTestOutbox(t, Options{Dir: dir})
			checkAll(t, o2, tc.keep)
			if seq := mustAppend(t, o2, true, testEvent(tc.keep)); seq != uint64(tc.keep+1) {
				t.Fatalf("next seq %d, want %d", seq, tc.keep+1)
			}
			o2.Close()
			o3 := newTestOutbox(t, Options{Dir: dir})
			checkAll(t, o3, tc.keep+1)
		})
	}
}

func TestCorruptMiddleIsError(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir})
	for i := 0; i < 10; i++ {
		mustAppend(t, o, true, testEvent(i))
	}
	o.Close()
	path := filepath.Join(dir, segName(1))
	flip(t, path, frameHeader+3) // inside the first record's payload
	_, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with corrupt middle record: %v, want ErrCorrupt", err)
	}
}

func TestTruncateBelowMinCursor(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	o.Register("a")
	o.Register("b")
	for i := 0; i < 500; i++ {
		mustAppend(t, o, false, testEvent(i))
	}
	before, _ := listSegments(dir)
	bytesBefore := o.Bytes()
	if err := o.Commit("a", 400); err != nil {
		t.Fatal(err)
	}
	if after, _ := listSegments(dir); len(after) != len(before) {
		t.Fatalf("segments deleted while consumer b is at 0: %d -> %d", len(before), len(after))
	}
	if err := o.Commit("b", 250); err != nil {
		t.Fatal(err)
	}
	after, _ := listSegments(dir)
	if len(after) >= len(before) || after[0] > 250 {
		t.Fatalf("segments %v after commit b=250 (before %v)", after, before)
	}
	if len(after) > 1 && after[1] <= 250 {
		t.Fatalf("segment %d wholly below 250 kept", after[0])
	}
	if o.Bytes() >= bytesBefore {
		t.Fatalf("Bytes %d not below %d", o.Bytes(), bytesBefore)
	}
	recs, err := o.Read(250, 1000)
	if err != nil || len(recs) != 251 || recs[0].Seq != 250 {
		t.Fatalf("Read(250) after truncation: %d records, %v", len(recs), err)
	}
	o.Close()

	o2 := newTestOutbox(t, Options{Dir: dir, SegmentBytes: 2048})
	if o2.Cursor("a") != 400 || o2.Cursor("b") != 250 || o2.Cursor("c") != 0 {
		t.Fatalf("cursors after reopen: a=%d b=%d c=%d", o2.Cursor("a"), o2.Cursor("b"), o2.Cursor("c"))
	}
	if o2.LastSeq() != 500 {
		t.Fatalf("LastSeq after reopen %d", o2.LastSeq())
	}
	// Everything consumed: only the active segment stays, and seqs continue.
	if err := o2.Commit("a", 501); err != nil {
		t.Fatal(err)
	}
	if err := o2.Commit("b", 501); err != nil {
		t.Fatal(err)
	}
	if seq := mustAppend(t, o2, true, testEvent(500)); seq != 501 {
		t.Fatalf("seq %d, want 501", seq)
	}
}

func TestErrFullShedsNonDurableOnly(t *testing.T) {
	o := newTestOutbox(t, Options{MaxBytes: 2000})
	o.Register("replicator")
	var i int
	for ; i < 1000; i++ {
		_, err := o.Append(context.Background(), false, testEvent(i))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if i == 1000 {
		t.Fatalf("no ErrFull after %d bytes", o.Bytes())
	}
	for j := 0; j < 5; j++ {
		mustAppend(t, o, true, testEvent(i+j))
	}
	if _, err := o.Append(context.Background(), false, testEvent(0)); !errors.Is(err, ErrFull) {
		t.Fatalf("non-durable append over the bound: %v", err)
	}
	if o.LastSeq() != uint64(i+5) {
		t.Fatalf("LastSeq %d, want %d", o.LastSeq(), i+5)
	}
}

func TestConcurrentAppends(t *testing.T) {
	o := newTestOutbox(t, Options{SegmentBytes: 16 << 10, SyncDelay: time.Millisecond})
	const workers, per = 8, 200
	var wg sync.WaitGroup
	seen := make([]map[uint64]string, workers)
	for w := 0; w < workers; w++ {
		seen[w] = map[uint64]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				ev := testEvent(w*per + i)
				seq, err := o.Append(context.Background(), i%3 == 0, ev)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				seen[w][seq] = ev.ID
			}
		}()
	}
	// A concurrent reader that commits its cursor, so segments are deleted under the appenders.
	o.Register("reader")
	got := map[uint64]string{}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var next uint64 = 1
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; len(got) < workers*per; i++ {
			if time.Now().After(deadline) {
				t.Errorf("reader got %d of %d records in 30s", len(got), workers*per)
				return
			}
			recs, err := o.Read(next, 50)
			if err != nil {
				t.Errorf("Read: %v", err)
				return
			}
			for _, r := range recs {
				if r.Seq != next {
					t.Errorf("read seq %d, want %d", r.Seq, next)
					return
				}
				got[r.Seq] = r.Event.ID
				next++
			}
			if i%5 == 0 {
				if err := o.Commit("reader", next); err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
			}
			if len(recs) == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				o.Wait(ctx, next-1)
				cancel()
			}
		}
	}()
	wg.Wait()
	<-readerDone
	all := map[uint64]string{}
	for _, m := range seen {
		for s, id := range m {
			if _, dup := all[s]; dup {
				t.Fatalf("seq %d returned twice", s)
			}
			all[s] = id
		}
	}
	if len(got) != workers*per || len(all) != workers*per {
		t.Fatalf("reader saw %d records, appenders %d, want %d", len(got), len(all), workers*per)
	}
	for seq, id := range all {
		if got[seq] != id {
			t.Fatalf("seq %d: appender %q, reader %q", seq, id, got[seq])
		}
	}
	if firsts, _ := listSegments(o.opts.Dir); len(firsts) > 3 {
		t.Fatalf("%d segments left after the reader committed everything", len(firsts))
	}
}

func TestCloseFlushesBuffered(t *testing.T) {
	dir := t.TempDir()
	o := newTestOutbox(t, Options{Dir: dir, SyncDelay: time.Hour})
	mustAppend(t, o, false, testEvent(0), testEvent(1))
	if err := o.Commit("x", 10); err == nil {
		t.Fatal("Commit beyond the next seq accepted")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	checkAll(t, newTestOutbox(t, Options{Dir: dir}), 2)
}

func TestWaitWakes(t *testing.T) {
	o := newTestOutbox(t, Options{})
	done := make(chan error, 1)
	go func() { done <- o.Wait(context.Background(), 0) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned before any append: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	mustAppend(t, o, false, testEvent(0))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake within 5s")
	}
	if err := o.Wait(context.Background(), 0); err != nil {
		t.Fatalf("Wait for an existing record: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := o.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with ctx timeout: %v", err)
	}
	go func() { done <- o.Wait(context.Background(), 1) }()
	o.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return on Close")
	}
}

// TestDurableSurvivesKill re-execs the test binary as a child that appends durable records
// from several goroutines and prints each acknowledged seq and event id; the child is
// SIGKILLed and every acknowledged record must be found after reopening.
func TestDurableSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "OUTBOX_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	acked := map[uint64]string{}
	for len(acked) < 400 && sc.Scan() {
		var seq uint64
		var id string
		if n, _ := fmt.Sscanf(sc.Text(), "acked %d %s", &seq, &id); n == 2 {
			acked[seq] = id
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}
	o := newTestOutbox(t, Options{Dir: dir})
	recs, err := o.Read(1, int(o.LastSeq())+1)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		got[r.Seq] = r.Event.ID
	}
	for seq, id := range acked {
		if got[seq] != id {
			t.Fatalf("acknowledged seq %d id %q lost after kill (found %q; %d records)", seq, id, got[seq], len(recs))
		}
	}
	// And the log accepts appends after the crash.
	if seq := mustAppend(t, o, true, testEvent(0)); seq != uint64(len(recs)+1) {
		t.Fatalf("seq after crash %d, want %d", seq, len(recs)+1)
	}
}

// TestHelperProcess is the child of TestDurableSurvivesKill; it does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("OUTBOX_HELPER_DIR")
	if dir == "" {
		return
	}
	o, err := Open(Options{Dir: dir, SegmentBytes: 8192, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("open error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; ; i++ {
				ev := testEvent(i)
				ev.ID = fmt.Sprintf("w%d-%d", w, i)
				seq, err := o.Append(context.Background(), true, ev)
				mu.Lock()
				if err != nil {
					fmt.Println("append error", err)
					os.Exit(1)
				}
				fmt.Printf("acked %d %s\n", seq, ev.ID)
				mu.Unlock()
			}
		}()
	}
	select {} // killed by the parent
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lastFrameLen returns the length of the last frame of a valid segment file.
func lastFrameLen(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var last int
	for p := 0; p < len(b); {
		_, _, n, ok := parseFrame(b[p:])
		if !ok {
			t.Fatalf("bad frame at %d", p)
		}
		last, p = n, p+n
	}
	return int64(last)
}
