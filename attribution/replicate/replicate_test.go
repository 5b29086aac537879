package replicate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// event returns the i-th event of a deterministic mix of all kinds.
func event(i int) attribution.Event {
	e := attribution.Event{
		ID: fmt.Sprintf("e%07d", i), At: time.Now().UTC().Truncate(time.Microsecond), Node: "hk-1", Region: "ap-east",
		Campaign: fmt.Sprintf("c%d", i%3), Inviter: fmt.Sprintf("u%d", i%17), IP: "203.0.113.1", Country: []string{"HK", "DE", "US"}[i%3],
	}
	reg := fmt.Sprintf("r%07d", i/5*5)
	switch i % 5 {
	case 0:
		e.Kind, e.Code, e.UA = attribution.KindClick, fmt.Sprintf("code%d", i%17), "ua"
	case 1:
		e.Kind, e.Code = attribution.KindLink, fmt.Sprintf("code%d", i)
	case 2:
		e.Kind, e.ID, e.Registration, e.Invitee, e.Device = attribution.KindRegistration, reg, reg, "v"+reg, "d1"
	case 3:
		e.Kind, e.ID, e.Registration, e.Invitee, e.Status = attribution.KindDecision, "d-"+reg, reg, "v"+reg, "rewarded"
	case 4:
		e.Kind, e.ID, e.Registration, e.User, e.Role, e.Value = attribution.KindGrant, "g-"+reg+"-inviter", reg, e.Inviter, "inviter", 10
	}
	return e
}

// want returns the expected row counts per table after events 0..n-1.
func want(n int) map[string]int {
	m := map[string]int{}
	for i := 0; i < n; i++ {
		m[tables[event(i).Kind].name]++
	}
	m["campaigns"] = min(n, 3)
	return m
}

type env struct {
	dir  string
	dsn  string
	ob   *outbox.Outbox
	pool *pgxpool.Pool
}

func newEnv(t *testing.T, migrated bool) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), dsn: pgtest.NewDB(t)}
	var err error
	e.pool, err = pgxpool.New(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	if migrated {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := migrate.Migrate(ctx, e.pool, migrate.Options{Logger: quiet()}); err != nil {
			t.Fatal(err)
		}
	}
	e.ob, err = outbox.Open(outbox.Options{Dir: e.dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ob.Close() })
	return e
}

func (e *env) append(t *testing.T, from, to int) {
	t.Helper()
	var evs []attribution.Event
	for i := from; i < to; i++ {
		evs = append(evs, event(i))
	}
	if _, err := e.ob.Append(context.Background(), false, evs...); err != nil {
		t.Fatal(err)
	}
}

// start runs a replicator in a goroutine; the returned stop cancels it and returns Run's error.
func (e *env) start(t *testing.T, cfg Config) (*Replicator, func() error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	r, err := New(cfg, e.ob, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return within 30s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return r, stop
}

func (e *env) counts(t *testing.T) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, table := range []string{"campaigns", "links", "clicks", "registrations", "decisions", "grants"} {
		var n int
		if err := e.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if n > 0 {
			m[table] = n
		}
	}
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (e *env) waitReplicated(t *testing.T, n int, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("cursor past %d", n), func() bool { return e.ob.Cursor(DefaultCursor) == uint64(n)+1 })
	if got, w := e.counts(t), want(n); !sameCounts(got, w) {
		t.Fatalf("rows %v, want %v", got, w)
	}
}

func TestReplicateAndReplayExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		arrays  bool
		writers int
	}{{false, 1}, {true, 2}, {false, 4}} {
		t.Run(fmt.Sprintf("arrays=%v/writers=%d", tc.arrays, tc.writers), func(t *testing.T) { testReplay(t, tc.arrays, tc.writers) })
	}
}

func testReplay(t *testing.T, arrays bool, writers int) {
	e := newEnv(t, true)
	reg := prometheus.NewRegistry()
	r, stop := e.start(t, Config{BatchSize: 300, FlushInterval: 20 * time.Millisecond, Registerer: reg, ArrayInsert: arrays, Writers: writers})
	e.append(t, 0, 1000)
	e.waitReplicated(t, 1000, 20*time.Second)
	e.append(t, 1000, 1003) // a partial batch is flushed by time
	e.waitReplicated(t, 1003, 20*time.Second)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
	if got := metricValue(r.mEvents.WithLabelValues("click")); got != float64(want(1003)["clicks"]) {
		t.Fatalf("click counter %v, want %d", got, want(1003)["clicks"])
	}
	if r.Lag() != 0 {
		t.Fatalf("Lag after catching up = %v", r.Lag())
	}

	// Replay from the start: no row twice.
	if err := e.ob.Commit(DefaultCursor, 1); err != nil {
		t.Fatal(err)
	}
	_, stop2 := e.start(t, Config{BatchSize: 100, FlushInterval: 10 * time.Millisecond, ArrayInsert: arrays, Writers: writers})
	e.waitReplicated(t, 1003, 20*time.Second)
	stop2()
}

func TestBuildInserts(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		wantStmts int
	}{
		{"empty", 0, 0},
		{"one click", 1, 2},           // campaigns + clicks
		{"all kinds", 10, 6},          // campaigns + 5 tables
		{"chunked", 60000, 6 + 5 + 5}, // 12000 per kind: 10-column tables need 2 chunks, 11 columns 3
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var recs []outbox.Record
			for i := 0; i < tc.n; i++ {
				recs = append(recs, outbox.Record{Seq: uint64(i + 1), Event: event(i)})
			}
			for _, arrays := range []bool{false, true} {
				stmts := buildInserts(recs, arrays)
				rows := 0
				for _, s := range stmts {
					if len(s.args) > maxParams {
						t.Fatalf("%s: %d params", s.table, len(s.args))
					}
					if got := strings.Count(s.sql, "$"); got != len(s.args) && (!arrays || s.table == "campaigns") {
						t.Fatalf("%s: %d placeholders for %d args", s.table, got, len(s.args))
					}
					// Idempotent on the primary key only: a conflict on any other
					// unique key must fail, not drop the row.
					key := map[string]string{"campaigns": "id", "links": "code", "clicks": "id", "registrations": "id", "decisions": "id", "grants": "id"}[s.table]
					if key == "" || !strings.HasSuffix(s.sql, " ON CONFLICT ("+key+") DO NOTHING") {
						t.Fatalf("%s: not idempotent on its key %q: %.80s ... %s", s.table, key, s.sql, s.sql[max(0, len(s.sql)-40):])
					}
					if s.table != "campaigns" {
						rows += s.rows
					}
				}
				if rows != tc.n {
					t.Fatalf("%d rows in statements, want %d", rows, tc.n)
				}
				if tc.n < 60000 && len(stmts) != tc.wantStmts {
					t.Fatalf("%d statements, want %d", len(stmts), tc.wantStmts)
				}
			}
		})
	}
}

func TestRunChecksSchemaAndConnection(t *testing.T) {
	e := newEnv(t, false)
	r, err := New(Config{Logger: quiet()}, e.ob, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, ErrNoSchema) {
		t.Fatalf("Run without schema: %v, want ErrNoSchema", err)
	}

	bad, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/nope?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	r2, err := New(Config{Logger: quiet(), Cursor: "other"}, e.ob, bad)
	if err != nil {
		t.Fatal(err)
	}
	err = r2.Run(ctx)
	if err == nil || errors.Is(err, ErrNoSchema) || !strings.Contains(err.Error(), "check database") {
		t.Fatalf("Run with a bad DSN: %v", err)
	}
	if _, err := New(Config{BatchSize: -1}, e.ob, e.pool); !errors.Is(err, ErrConfig) {
		t.Fatalf("New with a negative batch size: %v", err)
	}
	if _, err := New(Config{}, nil, e.pool); !errors.Is(err, ErrConfig) {
		t.Fatalf("New with nil outbox: %v", err)
	}
}

// TestSerializationFailureRetried makes the first insert into clicks fail with SQLSTATE
// 40001 (a trigger counting with a sequence, which rollbacks do not undo).
func TestSerializationFailureRetried(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `
		CREATE SEQUENCE fail_once;
		CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('fail_once') = 1 THEN
				RAISE EXCEPTION 'provoked serialization failure' USING ERRCODE = '40001';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER fail_once AFTER INSERT ON clicks FOR EACH STATEMENT EXECUTE FUNCTION fail_once();`); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(t, Config{FlushInterval: 10 * time.Millisecond})
	e.append(t, 0, 50)
	e.waitReplicated(t, 50, 20*time.Second)
	stop()
	var calls int
	if err := e.pool.QueryRow(ctx, "SELECT last_value FROM fail_once").Scan(&calls); err != nil {
		t.Fatal(err)
	}
	if calls < 2 {
		t.Fatalf("trigger ran %d times; the 40001 was not retried", calls)
	}
}

func TestLagWithFakeClock(t *testing.T) {
	e := newEnv(t, false)
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	r, err := New(Config{Logger: quiet(), Now: func() time.Time { return now }}, e.ob, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	ev := event(0)
	ev.At = now.Add(-3 * time.Second)
	r.setLag([]outbox.Record{{Seq: 1, Event: ev}})
	if r.Lag() != 3*time.Second || metricValue(r.mLag) != 3 {
		t.Fatalf("Lag = %v, gauge %v", r.Lag(), metricValue(r.mLag))
	}
	r.setLag(nil)
	if r.Lag() != 0 {
		t.Fatalf("Lag with nothing pending = %v", r.Lag())
	}
	r.ShedClicks(2)
	if metricValue(r.mShed) != 2 {
		t.Fatalf("shed counter %v", metricValue(r.mShed))
	}
}

// outageDuration is how long TestDatabaseOutage stops PostgreSQL: REFROUTER_OUTAGE (a Go
// duration, e.g. 20s) or 5s.
func outageDuration(t *testing.T) time.Duration {
	if s := os.Getenv("REFROUTER_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("REFROUTER_OUTAGE: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

func TestDatabaseOutage(t *testing.T) {
	srv := pgtest.Shared(t)
	e := newEnv(t, true)
	reg := prometheus.NewRegistry()
	r, stop := e.start(t, Config{BatchSize: 200, FlushInterval: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Registerer: reg})

	var wg sync.WaitGroup
	appendStop := make(chan struct{})
	var mu sync.Mutex
	n := 0
	wg.Add(1)
	go func() { // under load: 20 events every 5 ms, durable
		defer wg.Done()
		for {
			select {
			case <-appendStop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			mu.Lock()
			var evs []attribution.Event
			for i := n; i < n+20; i++ {
				evs = append(evs, event(i))
			}
			if _, err := e.ob.Append(context.Background(), true, evs...); err != nil {
				t.Errorf("append: %v", err)
				mu.Unlock()
				return
			}
			n += 20
			mu.Unlock()
		}
	}()
	waitFor(t, 10*time.Second, "first rows", func() bool { return e.ob.Cursor(DefaultCursor) > 1 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	outage := outageDuration(t)
	time.Sleep(outage) // the outage itself, not a wait for a condition
	if r.Lag() < outage/2 {
		t.Errorf("Lag during a %v outage = %v", outage, r.Lag())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // more load after the restart
	close(appendStop)
	wg.Wait()
	mu.Lock()
	total := n
	mu.Unlock()
	e.waitReplicated(t, total, 30*time.Second)
	stop()
	if metricValue(r.mRetries) == 0 {
		t.Fatal("no retries counted during the outage")
	}
	t.Logf("%d events, %v outage, %v retries", total, outage, metricValue(r.mRetries))
}

// TestCrashMidBatch kills a child process that replicates, then replicates the rest from the
// same outbox dir: every event arrives exactly once.
func TestCrashMidBatch(t *testing.T) {
	e := newEnv(t, true)
	const total = 20000
	for i := 0; i < total; i += 1000 {
		e.append(t, i, i+1000)
	}
	e.ob.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReplicate$")
	cmd.Env = append(os.Environ(), "REPLICATE_HELPER_DIR="+e.dir, "REPLICATE_HELPER_DSN="+e.dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "running") {
	}
	waitFor(t, 20*time.Second, "child to replicate some rows", func() bool {
		var n int
		e.pool.QueryRow(context.Background(), "SELECT count(*) FROM clicks").Scan(&n)
		return n >= 200
	})
	cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, out)
	cmd.Wait()
	var mid int
	e.pool.QueryRow(context.Background(), "SELECT count(*) FROM clicks").Scan(&mid)
	if mid >= total/5 {
		t.Logf("child finished before the kill (%d clicks); the restart still must not duplicate", mid)
	}

	e.ob, err = outbox.Open(outbox.Options{Dir: e.dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.ob.Close()
	_, stop := e.start(t, Config{FlushInterval: 10 * time.Millisecond})
	e.waitReplicated(t, total, 30*time.Second)
	stop()
}

// TestHelperReplicate is the child of TestCrashMidBatch; it does nothing in a normal run.
func TestHelperReplicate(t *testing.T) {
	dir, dsn := os.Getenv("REPLICATE_HELPER_DIR"), os.Getenv("REPLICATE_HELPER_DSN")
	if dir == "" {
		return
	}
	ob, err := outbox.Open(outbox.Options{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{BatchSize: 50, Logger: quiet()}, ob, pool)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("running")
	r.Run(context.Background()) // killed by the parent
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestCommitInOrder(t *testing.T) {
	mk := func(first, last uint64) batch {
		var recs []outbox.Record
		for s := first; s <= last; s++ {
			recs = append(recs, outbox.Record{Seq: s})
		}
		return batch{from: first, recs: recs}
	}
	tests := []struct {
		name    string
		batches [][2]uint64
		want    uint64 // cursor after; 0 = never committed
	}{
		{"in order", [][2]uint64{{1, 10}, {11, 20}}, 21},
		{"out of order", [][2]uint64{{11, 20}, {1, 10}}, 21},
		{"gap holds the cursor", [][2]uint64{{1, 10}, {21, 30}}, 11},
		{"first missing", [][2]uint64{{11, 20}, {21, 30}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			for i := 0; i < 30; i++ {
				if _, err := ob.Append(context.Background(), false, event(i)); err != nil {
					t.Fatal(err)
				}
			}
			r := &Replicator{src: ob, cfg: Config{Cursor: "c"}, log: quiet()}
			r.inflight.m = map[uint64]time.Time{}
			ch := make(chan batch, len(tc.batches))
			for _, b := range tc.batches {
				ch <- mk(b[0], b[1])
			}
			close(ch)
			r.commitInOrder(1, ch)
			if got := ob.Cursor("c"); got != tc.want {
				t.Fatalf("cursor %d, want %d", got, tc.want)
			}
		})
	}
}
