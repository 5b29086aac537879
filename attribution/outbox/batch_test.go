package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// testClick is a click of about 250 encoded bytes, as the recorder makes them.
func testClick(i int) Click {
	uas := []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"curl/8.5.0",
		"",
	}
	c := Click{
		At:       time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC).UnixNano() + int64(i)*7_700,
		ID:       fmt.Appendf(nil, "01JD3Y8Q0VYW9B5M3K%08d", i),
		Node:     "fra-1",
		Region:   "eu-central",
		Campaign: "spring-live",
		Code:     fmt.Appendf(nil, "code%016d", i%97),
		Inviter:  fmt.Sprintf("inviter-%d", i%31),
		UA:       []byte(uas[i%len(uas)]),
	}
	if i%5 != 0 {
		c.IP = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		c.Country = []byte("DE")
	}
	return c
}

// opEvent is event i of a mixed workload: mostly clicks, some registrations.
func opEvent(i int) (Click, attribution.Event, bool) {
	if i%7 == 3 {
		return Click{}, testEvent(i), false
	}
	c := testClick(i)
	return c, c.Event(), true
}

// segmentFiles returns the names and contents of the segment files in dir.
func segmentFiles(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	firsts, err := listSegments(dir)
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range firsts {
		b, err := os.ReadFile(filepath.Join(dir, segName(f)))
		if err != nil {
			tb.Fatal(err)
		}
		files[segName(f)] = b
	}
	return files
}

// segmentIndexes describes the records of o by segment: first seq, count,
// size and index of each, counting the buffered records as written (where
// records are, in the file or still in buf, is not part of the comparison).
func segmentIndexes(o *Outbox) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for i, s := range o.segs {
		count, size, index := s.count, s.size, s.index
		if i == len(o.segs)-1 {
			count += o.bufN
			size += int64(len(o.buf))
			index = slices.Clone(index)
			for _, rel := range o.bufIdx {
				index = append(index, s.size+rel)
			}
		}
		fmt.Fprintf(&b, "%d %d %d %v; ", s.first, count, size, index)
	}
	return fmt.Sprintf("%s next %d bytes %d", b.String(), o.nextSeq, o.bytes)
}

// TestAppendBatchSameAsAppend runs one workload through Append and through
// AppendBatch (clicks added with AddClick, other events with AddEvent or
// AddEncoded) and requires the same seqs, the same in-memory state after
// every call, the same records read back and byte-identical segment files,
// across segment sizes that roll inside batches and batches large enough to
// be written without buffering.
func TestAppendBatchSameAsAppend(t *testing.T) {
	for _, segBytes := range []int64{3000, 40_000, 300_000, 0} {
		t.Run(fmt.Sprint(segBytes), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(segBytes), 7))
			da, db := t.TempDir(), t.TempDir()
			oa := newTestOutbox(t, Options{Dir: da, SegmentBytes: segBytes, SyncDelay: time.Hour})
			ob := newTestOutbox(t, Options{Dir: db, SegmentBytes: segBytes, SyncDelay: time.Hour})
			ctx := context.Background()
			var b Batch
			next := 0
			for op := 0; op < 40; op++ {
				n := 1 + rng.IntN(8)
				if rng.IntN(4) == 0 {
					n = 200 + rng.IntN(700) // 50 to 220 KiB: some are written directly
				}
				durable := rng.IntN(8) == 0
				var evs []attribution.Event
				b.Reset()
				for range n {
					c, ev, isClick := opEvent(next)
					next++
					evs = append(evs, ev)
					switch {
					case isClick:
						b.AddClick(&c)
					case next%2 == 0:
						b.AddEvent(&ev)
					default:
						b.AddEncoded(EncodeEvent(nil, &ev))
					}
				}
				sa, err := oa.Append(ctx, durable, evs...)
				if err != nil {
					t.Fatal(err)
				}
				sb, err := ob.AppendBatch(ctx, durable, &b)
				if err != nil {
					t.Fatal(err)
				}
				if sa != sb || sb != uint64(next) {
					t.Fatalf("op %d: Append seq %d, AppendBatch seq %d, want %d", op, sa, sb, next)
				}
				if a, b := segmentIndexes(oa), segmentIndexes(ob); a != b {
					t.Fatalf("op %d: state differs:\n Append      %s\n AppendBatch %s", op, a, b)
				}
				if rng.IntN(5) == 0 { // a reader flushes buf
					from := 1 + uint64(rng.IntN(next))
					ra, err := oa.Read(from, 50)
					if err != nil {
						t.Fatal(err)
					}
					rb, err := ob.Read(from, 50)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(ra, rb) {
						t.Fatalf("Read(%d) differs", from)
					}
				}
			}
			ra, err := oa.Read(1, next+1)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := ob.Read(1, next+1)
			if err != nil {
				t.Fatal(err)
			}
			if len(rb) != next || !reflect.DeepEqual(ra, rb) {
				t.Fatalf("read back %d and %d records, want %d, equal", len(ra), len(rb), next)
			}
			for i, r := range rb {
				if _, want, _ := opEvent(i); r.Seq != uint64(i+1) || !reflect.DeepEqual(r.Event, want) {
					t.Fatalf("record %d: %+v, want %+v", i+1, r, want)
				}
			}
			oa.Close()
			ob.Close()
			fa, fb := segmentFiles(t, da), segmentFiles(t, db)
			if len(fb) == 0 || (segBytes == 3000 && len(fb) < 10) {
				t.Fatalf("%d segments", len(fb))
			}
			if !reflect.DeepEqual(fa, fb) {
				t.Fatalf("segment files differ: %d and %d files", len(fa), len(fb))
			}
			// Reopened, the log checks and reads the same.
			ob = newTestOutbox(t, Options{Dir: db, SegmentBytes: segBytes})
			if rb2, err := ob.Read(1, next+1); err != nil || !reflect.DeepEqual(rb2, rb) {
				t.Fatalf("after reopen: %d records, %v", len(rb2), err)
			}
		})
	}
}

// TestAppendBatchReuse: a batch appended twice is stored twice, each time
// with its own seqs, and a Reset batch takes new events.
func TestAppendBatchReuse(t *testing.T) {
	o := newTestOutbox(t, Options{})
	var b Batch
	c0, c1 := testClick(0), testClick(1)
	b.AddClick(&c0)
	b.AddClick(&c1)
	for want := uint64(2); want <= 4; want += 2 {
		if seq, err := o.AppendBatch(context.Background(), false, &b); err != nil || seq != want {
			t.Fatalf("AppendBatch = %d, %v; want %d", seq, err, want)
		}
	}
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("Len after Reset = %d", b.Len())
	}
	e := testEvent(9)
	b.AddEvent(&e)
	if seq, err := o.AppendBatch(context.Background(), true, &b); err != nil || seq != 5 {
		t.Fatalf("durable AppendBatch = %d, %v", seq, err)
	}
	o.smu.Lock()
	synced := o.synced
	o.smu.Unlock()
	if synced < 5 {
		t.Fatalf("durable AppendBatch returned before sync: synced %d", synced)
	}
	recs, err := o.Read(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []attribution.Event{c0.Event(), c1.Event(), c0.Event(), c1.Event(), e}
	if len(recs) != len(want) {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !reflect.DeepEqual(r.Event, want[i]) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}

func TestAppendBatchErrors(t *testing.T) {
	ctx := context.Background()
	c := testClick(1)

	t.Run("empty", func(t *testing.T) {
		o := newTestOutbox(t, Options{})
		mustAppend(t, o, false, testEvent(0))
		if seq, err := o.AppendBatch(ctx, false, &Batch{}); err != nil || seq != 1 {
			t.Fatalf("empty batch: %d, %v", seq, err)
		}
	})

	t.Run("full", func(t *testing.T) {
		o := newTestOutbox(t, Options{MaxBytes: 4000})
		var b Batch
		b.AddClick(&c)
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = o.AppendBatch(ctx, false, &b)
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("no ErrFull over the bound: %v (%d bytes)", err, o.Bytes())
		}
		last := o.LastSeq()
		if _, err := o.AppendBatch(ctx, false, &b); !errors.Is(err, ErrFull) || o.LastSeq() != last {
			t.Fatalf("non-durable over the bound: %v, LastSeq %d → %d", err, last, o.LastSeq())
		}
		if seq, err := o.AppendBatch(ctx, true, &b); err != nil || seq != last+1 {
			t.Fatalf("durable over the bound: %d, %v", seq, err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		o := newTestOutbox(t, Options{})
		o.Close()
		var b Batch
		b.AddClick(&c)
		if _, err := o.AppendBatch(ctx, false, &b); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	})

	t.Run("ctx done", func(t *testing.T) {
		o := newTestOutbox(t, Options{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		var b Batch
		b.AddClick(&c)
		if _, err := o.AppendBatch(cctx, false, &b); !errors.Is(err, context.Canceled) || o.LastSeq() != 0 {
			t.Fatalf("done ctx: %v, LastSeq %d", err, o.LastSeq())
		}
	})

	t.Run("too large", func(t *testing.T) {
		for _, add := range []func(b *Batch){
			func(b *Batch) {
				big := testClick(2)
				big.UA = bytes.Repeat([]byte("u"), MaxEventBytes)
				b.AddClick(&big)
			},
			func(b *Batch) {
				e := testEvent(2)
				e.Reason = strings.Repeat("r", MaxEventBytes)
				b.AddEvent(&e)
			},
			func(b *Batch) {
				enc := make([]byte, MaxEventBytes+1)
				enc[0] = codecVersion
				b.AddEncoded(enc)
			},
		} {
			o := newTestOutbox(t, Options{})
			var b Batch
			b.AddClick(&c)
			add(&b)
			b.AddClick(&c)
			if b.Len() != 2 {
				t.Fatalf("Len %d: the large event was kept", b.Len())
			}
			if _, err := o.AppendBatch(ctx, true, &b); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err %v, want ErrTooLarge", err)
			}
			if o.LastSeq() != 0 || o.Bytes() != 0 {
				t.Fatalf("part of a failed batch was appended: LastSeq %d, %d bytes", o.LastSeq(), o.Bytes())
			}
			b.Reset()
			b.AddClick(&c)
			if seq, err := o.AppendBatch(ctx, false, &b); err != nil || seq != 1 {
				t.Fatalf("after Reset: %d, %v", seq, err)
			}
		}
	})

	t.Run("not encoded", func(t *testing.T) {
		for _, enc := range [][]byte{nil, {2}, {0, 1, 0, 0, 0}, {3, 1, 0, 0, 0}} {
			o := newTestOutbox(t, Options{})
			var b Batch
			b.AddEncoded(enc)
			if _, err := o.AppendBatch(ctx, false, &b); !errors.Is(err, ErrCorrupt) || o.LastSeq() != 0 {
				t.Fatalf("%x: %v, LastSeq %d", enc, err, o.LastSeq())
			}
		}
		// Version 1 encodings (records from before ClickAt) are accepted.
		ev := testEvent(3)
		v2 := EncodeEvent(nil, &ev)
		v1 := append([]byte{1}, v2[1:]...)
		p := 2
		for range 3 { // At seconds, At nanoseconds, Value; then drop ClickAt (one 0 byte)
			_, n := binary.Uvarint(v1[p:])
			p += n
		}
		v1 = append(v1[:p:p], v1[p+1:]...)
		if _, err := DecodeEvent(v1); err != nil {
			t.Fatalf("test encoding: %v", err)
		}
		o := newTestOutbox(t, Options{})
		var b Batch
		b.AddEncoded(v1)
		if seq, err := o.AppendBatch(ctx, false, &b); err != nil || seq != 1 {
			t.Fatalf("version 1: %d, %v", seq, err)
		}
		// Beyond the version byte, bad encodings are caught in invariants builds only.
		bad := append([]byte{codecVersion, 1, 0, 0, 0, 0}, 200) // a string longer than the rest
		b.Reset()
		b.AddEncoded(bad)
		_, err := o.AppendBatch(ctx, false, &b)
		if invariants && (!errors.Is(err, ErrCorrupt) || o.LastSeq() != 1) {
			t.Fatalf("invariants build: %v, LastSeq %d", err, o.LastSeq())
		}
		if !invariants && err != nil {
			t.Fatalf("without invariants: %v", err)
		}
	})

	t.Run("poisoned", func(t *testing.T) {
		o := newTestOutbox(t, Options{})
		o.mu.Lock()
		o.segs[len(o.segs)-1].f.Close() // every write fails from here on
		o.mu.Unlock()
		var b Batch
		for i := range 400 { // large enough to be written at once
			c := testClick(i)
			b.AddClick(&c)
		}
		_, err := o.AppendBatch(ctx, false, &b)
		if err == nil {
			t.Fatal("write to a closed file succeeded")
		}
		if _, err2 := o.AppendBatch(ctx, false, &b); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("after a failed write: %v, want %v", err2, err)
		}
		if _, err2 := o.Append(ctx, true, testEvent(0)); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("Append after a failed write: %v, want %v", err2, err)
		}
		o.mu.Lock()
		o.segs[len(o.segs)-1].f, _ = os.Open(os.DevNull) // for Close
		o.mu.Unlock()
	})
}

func TestAppendBatchWakesWait(t *testing.T) {
	o := newTestOutbox(t, Options{})
	done := make(chan error, 1)
	go func() { done <- o.Wait(context.Background(), 0) }()
	time.Sleep(10 * time.Millisecond)
	var b Batch
	c := testClick(0)
	b.AddClick(&c)
	if _, err := o.AppendBatch(context.Background(), false, &b); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake on AppendBatch")
	}
}

// TestAppendBatchAllocs: recording batch after batch of clicks (encode and
// append, buffered or written at once) allocates nothing in steady state.
func TestAppendBatchAllocs(t *testing.T) {
	if invariants {
		t.Skip("invariants builds decode every event appended")
	}
	o := newTestOutbox(t, Options{SyncDelay: time.Hour})
	clicks := make([]Click, 256)
	for i := range clicks {
		clicks[i] = testClick(i)
	}
	for _, n := range []int{256, 7} {
		var b Batch
		record := func() {
			b.Reset()
			for i := range n {
				b.AddClick(&clicks[i])
			}
			if _, err := o.AppendBatch(context.Background(), false, &b); err != nil {
				t.Fatal(err)
			}
		}
		for range 20 {
			record() // grow the buffers
		}
		if a := testing.AllocsPerRun(100, record); a != 0 {
			t.Fatalf("batches of %d clicks: %v allocations per batch", n, a)
		}
	}
}

// BenchmarkAppendBatchClicks measures recording clicks into the outbox, in
// batches of 256 as the node's recorder does, per click.
func BenchmarkAppendBatchClicks(b *testing.B) {
	o := newTestOutbox(b, Options{})
	o.Register("bench")
	clicks := make([]Click, 256)
	for i := range clicks {
		clicks[i] = testClick(i)
	}
	var batch Batch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		batch.AddClick(&clicks[i%len(clicks)])
		if batch.Len() == len(clicks) || i == b.N-1 {
			seq, err := o.AppendBatch(context.Background(), false, &batch)
			if err != nil {
				b.Fatal(err)
			}
			batch.Reset()
			if seq%(256*400) == 0 {
				b.StopTimer()
				o.Commit("bench", seq)
				b.StartTimer()
			}
		}
	}
}

// BenchmarkAppendClicks is BenchmarkAppendBatchClicks through Append, with
// the events built beforehand.
func BenchmarkAppendClicks(b *testing.B) {
	o := newTestOutbox(b, Options{})
	o.Register("bench")
	evs := make([]attribution.Event, 256)
	for i := range evs {
		c := testClick(i)
		evs[i] = c.Event()
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += len(evs) {
		seq, err := o.Append(context.Background(), false, evs[:min(len(evs), b.N-i)]...)
		if err != nil {
			b.Fatal(err)
		}
		if seq%(256*400) < 256 {
			b.StopTimer()
			o.Commit("bench", seq)
			b.StartTimer()
		}
	}
}
