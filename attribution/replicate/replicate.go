// Package replicate ships a node's outbox to PostgreSQL or CockroachDB.
//
// A Replicator reads the outbox from its persisted cursor, groups records into batches by
// size and time, writes each batch in one transaction as multi-row INSERT ... ON CONFLICT
// (key) DO NOTHING statements per table, where key is the table's primary key (the event
// id; a link's code), so replays are no-ops while a row conflicting on any other unique key
// fails the batch loudly instead of being dropped; it retries serialization failures
// (40001) inside the transaction as cockroach-go's crdb.ExecuteInTx does and every other
// error with capped exponential backoff, and commits the outbox cursor only after the
// database commit. While the database is down the outbox keeps the records on disk.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
)

// Errors of the replicator.
var (
	// ErrNoSchema is returned by Check and Run when the database lacks the attribution schema.
	ErrNoSchema = errors.New("replicate: database has no attribution schema (run refrouter migrate)")
	// ErrConfig is returned by New for invalid arguments.
	ErrConfig = errors.New("replicate: invalid config")
)

// Defaults for zero Config fields.
const (
	DefaultBatchSize     = 1000
	DefaultWriters       = 2
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultMinBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultCursor        = "replicator"
)

// Config configures a Replicator.
type Config struct {
	BatchSize     int                   // records per transaction; 0 = 1000
	Writers       int                   // batches written concurrently; 0 = 2
	FlushInterval time.Duration         // a partial batch waits at most this long; 0 = 100 ms
	MinBackoff    time.Duration         // first retry delay after a failed batch; 0 = 50 ms
	MaxBackoff    time.Duration         // retry delay cap; 0 = 5 s
	Cursor        string                // outbox cursor name; "" = "replicator"
	Registerer    prometheus.Registerer // metrics; nil = not registered
	Logger        *slog.Logger          // nil = slog.Default()
	Now           func() time.Time      // clock for the lag; nil = time.Now
	// ArrayInsert sends each table's rows as one array per column (INSERT ... SELECT * FROM
	// unnest($1::text[], ...)) instead of a VALUES list with one parameter per value.
	ArrayInsert bool
}

// Replicator copies outbox records into the database. Run drives it; Lag and ShedClicks
// are safe to call concurrently with Run.
type Replicator struct {
	cfg  Config
	src  *outbox.Outbox
	pool *pgxpool.Pool
	log  *slog.Logger
	lag  atomic.Int64 // nanoseconds

	inflight struct { // batches handed to writers and not yet committed: first seq -> first event time
		sync.Mutex
		m map[uint64]time.Time
	}

	mEvents  *prometheus.CounterVec
	mBatch   prometheus.Histogram
	mLag     prometheus.Gauge
	mRetries prometheus.Counter
	mShed    prometheus.Counter
}

// New validates cfg and returns a Replicator of src into pool. It registers the metrics
// with cfg.Registerer. It does not touch the database: Run checks it first.
func New(cfg Config, src *outbox.Outbox, pool *pgxpool.Pool) (*Replicator, error) {
	if src == nil || pool == nil {
		return nil, fmt.Errorf("nil outbox or pool: %w", ErrConfig)
	}
	if cfg.BatchSize < 0 || cfg.BatchSize > 20000 || cfg.Writers < 0 || cfg.Writers > 64 || cfg.FlushInterval < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return nil, fmt.Errorf("batch size %d, flush interval %v, backoff %v..%v: %w", cfg.BatchSize, cfg.FlushInterval, cfg.MinBackoff, cfg.MaxBackoff, ErrConfig)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Writers == 0 {
		cfg.Writers = DefaultWriters
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Cursor == "" {
		cfg.Cursor = DefaultCursor
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Replicator{
		cfg: cfg, src: src, pool: pool, log: cfg.Logger.With("component", "replicator"),
		mEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refrouter_replicator_events_total", Help: "Events replicated to the database, by kind.",
		}, []string{"kind"}),
		mBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "refrouter_replicator_batch_seconds", Help: "Duration of successful batch transactions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		mLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "refrouter_replicator_lag_seconds", Help: "Age of the oldest event not yet replicated.",
		}),
		mRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_replicator_retries_total", Help: "Batches retried after an error.",
		}),
		mShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refrouter_outbox_shed_clicks_total", Help: "Clicks not recorded because the outbox was full.",
		}),
	}
	src.Register(cfg.Cursor)
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.mEvents, r.mBatch, r.mLag, r.mRetries, r.mShed} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register replicator metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Lag returns the age of the oldest event not yet replicated, as of the last look (0 when
// the replicator is caught up).
func (r *Replicator) Lag() time.Duration { return time.Duration(r.lag.Load()) }

// ShedClicks counts n clicks that the caller dropped because the outbox returned ErrFull.
func (r *Replicator) ShedClicks(n int) { r.mShed.Add(float64(n)) }

// Check verifies that the database is reachable and has the attribution schema.
func (r *Replicator) Check(ctx context.Context) error {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name IN ('clicks','links','registrations','decisions','grants','campaigns')`).Scan(&n)
	if err != nil {
		return fmt.Errorf("replicate: check database: %w", err)
	}
	if n != 6 {
		return fmt.Errorf("%d of 6 tables found: %w", n, ErrNoSchema)
	}
	return nil
}

// Run replicates until ctx is done, then gives the batches in flight one short last
// attempt, commits the cursor as far as it can and returns ctx's error. It first runs Check
// and returns its error at once. One goroutine reads the outbox; Config.Writers goroutines
// write batches concurrently; the cursor advances only over batches that are all committed
// in the database, in seq order. Only one Run may be active per outbox cursor.
func (r *Replicator) Run(ctx context.Context) error {
	if err := r.Check(ctx); err != nil {
		return err
	}
	next := r.src.Cursor(r.cfg.Cursor)
	if next == 0 {
		next = 1
	}
	r.inflight.Lock()
	r.inflight.m = map[uint64]time.Time{}
	r.inflight.Unlock()

	work := make(chan batch)
	written := make(chan batch, r.cfg.Writers)
	var writers sync.WaitGroup
	for i := 0; i < r.cfg.Writers; i++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for b := range work {
				if err := r.writeWithRetry(ctx, b.recs); err != nil && !r.lastAttempt(b.recs) {
					continue // stays in the outbox; the cursor cannot pass it
				}
				written <- b
			}
		}()
	}
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		r.commitInOrder(next, written)
	}()

	err := r.readLoop(ctx, next, work)
	close(work)
	writers.Wait()
	close(written)
	<-committed
	r.setLag(nil)
	return err
}

// batch is a run of records read from the outbox. It covers the seqs from..last, where
// last is the seq of its last record: from is the seq it was read from, below recs[0].Seq
// when the records between were gone (a gap left by a crash, or records deleted below the
// oldest kept one), so that the cursor can pass them.
type batch struct {
	from uint64
	recs []outbox.Record
}

// readLoop reads batches from next and hands them to the writers until ctx is done.
func (r *Replicator) readLoop(ctx context.Context, next uint64, work chan<- batch) error {
	var pendingSince time.Time // when a partial batch was first seen
	cover := next              // the seq the next batch covers from: next, or below it when records are gone
	for ctx.Err() == nil {
		recs, err := r.src.Read(next, r.cfg.BatchSize)
		if errors.Is(err, outbox.ErrBelowFirst) {
			first := r.src.FirstSeq()
			r.log.Error("outbox records below the replicator's cursor were deleted before they were replicated: they will never reach the database; going on from the oldest kept record",
				"cursor", next, "first_kept", first, "missing", first-next)
			next = first
			continue
		}
		if err != nil {
			return fmt.Errorf("replicate: %w", err)
		}
		r.updateLag(recs)
		if len(recs) == 0 {
			pendingSince = time.Time{}
			if err := r.src.Wait(ctx, next-1); err != nil && ctx.Err() == nil {
				return fmt.Errorf("replicate: %w", err)
			}
			continue
		}
		if len(recs) < r.cfg.BatchSize {
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			if wait := r.cfg.FlushInterval - now.Sub(pendingSince); wait > 0 {
				// Wait for more records or the end of the interval, then read again.
				wctx, cancel := context.WithTimeout(ctx, wait)
				r.src.Wait(wctx, recs[len(recs)-1].Seq)
				cancel()
				continue
			}
		}
		pendingSince = time.Time{}
		if recs[0].Seq > next {
			r.log.Error("gap in the outbox: records lost in a crash before they were durable; they will never reach the database",
				"missing_from", next, "missing_to", recs[0].Seq-1)
		}
		b := batch{from: cover, recs: recs}
		r.inflight.Lock()
		r.inflight.m[b.from] = recs[0].Event.At
		r.inflight.Unlock()
		select {
		case work <- b:
			next = recs[len(recs)-1].Seq + 1
			cover = next
		case <-ctx.Done():
			r.inflight.Lock()
			delete(r.inflight.m, b.from)
			r.inflight.Unlock()
		}
	}
	return ctx.Err()
}

// commitInOrder receives written batches (in any order) and commits the outbox cursor over
// the contiguous prefix starting at next.
func (r *Replicator) commitInOrder(next uint64, written <-chan batch) {
	done := map[uint64]uint64{} // from seq -> last seq of written batches not yet committed
	for b := range written {
		done[b.from] = b.recs[len(b.recs)-1].Seq
		advanced := false
		for {
			last, ok := done[next]
			if !ok {
				break
			}
			delete(done, next)
			r.inflight.Lock()
			delete(r.inflight.m, next)
			r.inflight.Unlock()
			next, advanced = last+1, true
		}
		if advanced {
			if err := r.src.Commit(r.cfg.Cursor, next); err != nil {
				r.log.Error("commit outbox cursor", "err", err, "seq", next)
			}
		}
	}
}

// lastAttempt makes one short attempt to write recs after Run's ctx is done.
func (r *Replicator) lastAttempt(recs []outbox.Record) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.writeBatch(ctx, recs); err != nil {
		r.log.Warn("last write attempt failed; records stay in the outbox", "err", err, "records", len(recs))
		return false
	}
	return true
}

// updateLag sets the lag from the oldest batch in flight, else from the oldest record read
// but not yet dispatched (recs), else 0.
func (r *Replicator) updateLag(recs []outbox.Record) {
	var oldest time.Time
	r.inflight.Lock()
	for _, at := range r.inflight.m {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	r.inflight.Unlock()
	if oldest.IsZero() && len(recs) > 0 {
		oldest = recs[0].Event.At
	}
	if oldest.IsZero() {
		r.setLag(nil)
		return
	}
	r.setLag([]outbox.Record{{Event: attribution.Event{At: oldest}}})
}

func (r *Replicator) setLag(recs []outbox.Record) {
	var lag time.Duration
	if len(recs) > 0 {
		if lag = r.cfg.Now().Sub(recs[0].Event.At); lag < 0 {
			lag = 0
		}
	}
	r.lag.Store(int64(lag))
	r.mLag.Set(lag.Seconds())
}

// writeWithRetry writes recs until it succeeds or ctx is done (then it returns ctx's error).
func (r *Replicator) writeWithRetry(ctx context.Context, recs []outbox.Record) error {
	backoff := r.cfg.MinBackoff
	for {
		start := time.Now()
		err := r.writeBatch(ctx, recs)
		if err == nil {
			r.mBatch.Observe(time.Since(start).Seconds())
			for _, rec := range recs {
				r.mEvents.WithLabelValues(rec.Event.Kind.String()).Inc()
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.mRetries.Inc()
		r.log.Warn("replicate batch failed; retrying", "err", err, "records", len(recs), "first_seq", recs[0].Seq, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		r.updateLag(nil)
		if backoff *= 2; backoff > r.cfg.MaxBackoff {
			backoff = r.cfg.MaxBackoff
		}
	}
}

// writeBatch writes recs in one transaction.
func (r *Replicator) writeBatch(ctx context.Context, recs []outbox.Record) error {
	stmts := buildInserts(recs, r.cfg.ArrayInsert)
	return executeTx(ctx, r.pool, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return fmt.Errorf("insert %s: %w", s.table, err)
			}
		}
		return nil
	})
}

// txAdapter lets crdb.ExecuteInTx drive a pgx transaction. Unlike crdbpgxv5.ExecuteTx's
// adapter it keeps the error of the final COMMIT: on PostgreSQL, RELEASE SAVEPOINT does not
// commit, and a lost COMMIT must not advance the outbox cursor.
type txAdapter struct {
	tx        pgx.Tx
	commitErr *error
}

var _ crdb.Tx = txAdapter{}

func (a txAdapter) Exec(ctx context.Context, q string, args ...any) error {
	_, err := a.tx.Exec(ctx, q, args...)
	return err
}

func (a txAdapter) Commit(ctx context.Context) error {
	*a.commitErr = a.tx.Commit(ctx)
	return *a.commitErr
}

func (a txAdapter) Rollback(ctx context.Context) error { return a.tx.Rollback(ctx) }

// executeTx runs fn in a transaction through crdb.ExecuteInTx (savepoint retries of 40001)
// and reports a failed commit.
func executeTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	var commitErr error
	if err := crdb.ExecuteInTx(ctx, txAdapter{tx: tx, commitErr: &commitErr}, func() error { return fn(tx) }); err != nil {
		return err
	}
	if commitErr != nil {
		return fmt.Errorf("commit: %w", commitErr)
	}
	return nil
}

// insert is one multi-row statement.
type insert struct {
	table string
	sql   string
	args  []any
	rows  int
}

// tableOf describes how events of one kind map to a table.
type tableOf struct {
	name string
	key  string // the conflict target: the primary key, which a replayed event repeats
	cols []string
	vals func(e *attribution.Event) []any
}

var tables = map[attribution.Kind]tableOf{
	attribution.KindClick: {"clicks", "id", []string{"id", "at", "node", "region", "campaign", "code", "inviter", "ip", "country", "ua"},
		func(e *attribution.Event) []any {
			return []any{e.ID, e.At, e.Node, e.Region, e.Campaign, e.Code, e.Inviter, e.IP, e.Country, e.UA}
		}},
	attribution.KindLink: {"links", "code", []string{"code", "id", "at", "node", "region", "campaign", "inviter"},
		func(e *attribution.Event) []any {
			return []any{e.Code, e.ID, e.At, e.Node, e.Region, e.Campaign, e.Inviter}
		}},
	attribution.KindRegistration: {"registrations", "id", []string{"id", "registration_id", "at", "node", "region", "campaign", "inviter", "invitee", "device", "ip", "country"},
		func(e *attribution.Event) []any {
			reg := e.Registration
			if reg == "" {
				reg = e.ID
			}
			return []any{e.ID, reg, e.At, e.Node, e.Region, e.Campaign, e.Inviter, e.Invitee, e.Device, e.IP, e.Country}
		}},
	attribution.KindDecision: {"decisions", "id", []string{"id", "registration_id", "at", "node", "region", "campaign", "inviter", "invitee", "status", "reason"},
		func(e *attribution.Event) []any {
			return []any{e.ID, e.Registration, e.At, e.Node, e.Region, e.Campaign, e.Inviter, e.Invitee, e.Status, e.Reason}
		}},
	attribution.KindGrant: {"grants", "id", []string{"id", "registration_id", "at", "node", "region", "campaign", "user_id", "role", "value"},
		func(e *attribution.Event) []any {
			return []any{e.ID, e.Registration, e.At, e.Node, e.Region, e.Campaign, e.User, e.Role, e.Value}
		}},
}

// maxParams keeps each statement under PostgreSQL's 65535 bind parameters.
const maxParams = 60000

// buildInserts groups recs by table into multi-row INSERT ... ON CONFLICT (key) DO NOTHING
// statements, plus one for the campaigns seen (first_seen = earliest event time). With
// arrays set the rows travel as one array per column (see arrayInsert).
func buildInserts(recs []outbox.Record, arrays bool) []insert {
	byKind := map[attribution.Kind][]*attribution.Event{}
	campaigns := map[string]time.Time{}
	var order []string
	for i := range recs {
		e := &recs[i].Event
		if _, ok := tables[e.Kind]; !ok {
			continue // unknown kinds are not replicated
		}
		byKind[e.Kind] = append(byKind[e.Kind], e)
		if e.Campaign != "" {
			if t, ok := campaigns[e.Campaign]; !ok || e.At.Before(t) {
				if !ok {
					order = append(order, e.Campaign)
				}
				campaigns[e.Campaign] = e.At
			}
		}
	}
	var out []insert
	if len(order) > 0 {
		ins := insert{table: "campaigns"}
		var b strings.Builder
		b.WriteString("INSERT INTO campaigns (id, first_seen) VALUES ")
		for i, c := range order {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "($%d,$%d)", 2*i+1, 2*i+2)
			ins.args = append(ins.args, c, campaigns[c])
		}
		b.WriteString(" ON CONFLICT (id) DO NOTHING")
		ins.sql = b.String()
		out = append(out, ins)
	}
	for _, k := range []attribution.Kind{attribution.KindLink, attribution.KindClick, attribution.KindRegistration, attribution.KindDecision, attribution.KindGrant} {
		evs := byKind[k]
		t := tables[k]
		per := maxParams / len(t.cols)
		for len(evs) > 0 {
			n := min(len(evs), per)
			if arrays {
				out = append(out, arrayInsert(t, evs[:n]))
			} else {
				out = append(out, multiRow(t, evs[:n]))
			}
			evs = evs[n:]
		}
	}
	return out
}

// arrayInsert is the same multi-row insert with one array parameter per column
// (INSERT ... SELECT * FROM unnest($1::text[], ...)): the statement text does not depend
// on the number of rows, so it is prepared once per connection.
func arrayInsert(t tableOf, evs []*attribution.Event) insert {
	cols := make([]any, len(t.cols))
	casts := make([]string, len(t.cols))
	for j, v := range t.vals(evs[0]) {
		switch v.(type) {
		case string:
			cols[j], casts[j] = make([]string, 0, len(evs)), "text[]"
		case time.Time:
			cols[j], casts[j] = make([]time.Time, 0, len(evs)), "timestamptz[]"
		case int64:
			cols[j], casts[j] = make([]int64, 0, len(evs)), "int8[]"
		}
	}
	for _, e := range evs {
		for j, v := range t.vals(e) {
			switch c := cols[j].(type) {
			case []string:
				cols[j] = append(c, v.(string))
			case []time.Time:
				cols[j] = append(c, v.(time.Time))
			case []int64:
				cols[j] = append(c, v.(int64))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) SELECT * FROM unnest(", t.name, strings.Join(t.cols, ", "))
	for j := range t.cols {
		if j > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::%s", j+1, casts[j])
	}
	fmt.Fprintf(&b, ") ON CONFLICT (%s) DO NOTHING", t.key)
	return insert{table: t.name, sql: b.String(), args: cols, rows: len(evs)}
}

func multiRow(t tableOf, evs []*attribution.Event) insert {
	ins := insert{table: t.name, args: make([]any, 0, len(evs)*len(t.cols))}
	var b strings.Builder
	b.Grow(64 + len(evs)*len(t.cols)*6)
	b.WriteString("INSERT INTO ")
	b.WriteString(t.name)
	b.WriteString(" (")
	b.WriteString(strings.Join(t.cols, ", "))
	b.WriteString(") VALUES ")
	p := 1
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := range t.cols {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
		ins.args = append(ins.args, t.vals(e)...)
	}
	b.WriteString(" ON CONFLICT (")
	b.WriteString(t.key)
	b.WriteString(") DO NOTHING")
	ins.sql = b.String()
	ins.rows = len(evs)
	return ins
}
