package replicate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/internal/pgtest"
)

func benchPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDB(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := migrate.Migrate(context.Background(), pool, migrate.Options{Logger: quiet()}); err != nil {
		b.Fatal(err)
	}
	return pool
}

// BenchmarkWriteBatch measures one transaction of multi-row inserts per batch, by batch size.
func BenchmarkWriteBatch(b *testing.B) {
	for _, c := range []struct {
		size   int
		arrays bool
	}{{10, false}, {100, false}, {1000, false}, {10, true}, {100, true}, {1000, true}} {
		size := c.size
		b.Run(fmt.Sprintf("batch=%d/arrays=%v", size, c.arrays), func(b *testing.B) {
			pool := benchPool(b)
			r := &Replicator{pool: pool, cfg: Config{ArrayInsert: c.arrays}}
			recs := make([]outbox.Record, size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range recs {
					ev := event(i*size + j)
					ev.ID = fmt.Sprintf("%s-%d", ev.ID, i) // fresh rows, not conflicts
					ev.Registration += fmt.Sprintf("-%d", i)
					ev.Code += fmt.Sprintf("-%d", i)
					recs[j] = outbox.Record{Seq: uint64(i*size + j + 1), Event: ev}
				}
				b.StartTimer()
				if err := r.writeBatch(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReplicate measures the whole path: 20,000 events from the outbox to PostgreSQL
// through Run with the default batch size, by the number of concurrent writers.
func BenchmarkReplicate(b *testing.B) {
	for _, writers := range []int{1, 2} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchReplicate(b, writers) })
	}
}

func benchReplicate(b *testing.B, writers int) {
	const n = 20000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pool := benchPool(b)
		ob, err := outbox.Open(outbox.Options{Dir: b.TempDir(), Logger: quiet()})
		if err != nil {
			b.Fatal(err)
		}
		evs := make([]attribution.Event, 0, n)
		for j := 0; j < n; j++ {
			evs = append(evs, event(j))
		}
		if _, err := ob.Append(context.Background(), true, evs...); err != nil {
			b.Fatal(err)
		}
		r, err := New(Config{Logger: quiet(), FlushInterval: time.Millisecond, Writers: writers}, ob, pool)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		for ob.Cursor(DefaultCursor) != n+1 {
			if time.Since(start) > time.Minute {
				b.Fatal("not replicated within a minute")
			}
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		ob.Close()
		b.ReportMetric(n/el.Seconds(), "events/s")
	}
}
