package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppendDurable64 measures durable appends with 64 concurrent appenders sharing
// fdatasyncs (group commit).
func BenchmarkAppendDurable64(b *testing.B) {
	o := newTestOutbox(b, Options{})
	ev := testEvent(1)
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := o.Append(context.Background(), true, ev); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkAppendNonDurable measures buffered appends from one goroutine. A
// consumer commits every 100,000 records, as the replicator would, so that
// long runs stay under the outbox's bound.
func BenchmarkAppendNonDurable(b *testing.B) {
	o := newTestOutbox(b, Options{})
	o.Register("bench")
	ev := testEvent(1)
	b.ReportAllocs()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		seq, err := o.Append(context.Background(), false, ev)
		if err != nil {
			b.Fatal(err)
		}
		if seq%100000 == 0 {
			if err := o.Commit("bench", seq); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkRead measures sequential reads in batches of 1000.
func BenchmarkRead(b *testing.B) {
	o := newTestOutbox(b, Options{})
	ev := testEvent(1)
	for i := 0; i < 10000; i++ {
		if _, err := o.Append(context.Background(), false, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		recs, err := o.Read(uint64(i%9)*1000+1, 1000)
		if err != nil || len(recs) != 1000 {
			b.Fatalf("Read: %d, %v", len(recs), err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}
