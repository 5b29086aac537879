package replicate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
)

// wantRange returns the expected row counts per table after events first..last-1.
func wantRange(first, last int) map[string]int {
	m := map[string]int{}
	camps := map[string]bool{}
	for i := first; i < last; i++ {
		e := event(i)
		m[tables[e.Kind].name]++
		camps[e.Campaign] = true
	}
	m["campaigns"] = len(camps)
	return m
}

// reopenSmall closes the env's outbox (if open) and opens it again with
// 4 KiB segments, so that a test's records span many of them.
func (e *env) reopenSmall(t *testing.T) {
	t.Helper()
	e.ob.Close()
	var err error
	if e.ob, err = outbox.Open(outbox.Options{Dir: e.dir, SegmentBytes: 4096, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
}

// TestRecordsDeletedBelowCursor: the records below the replicator's cursor were deleted
// (here: it never committed a cursor, and another consumer's commits deleted the segments,
// as a node started without a database did before persisted cursors held segments). The
// replicator must say so and go on from the oldest kept record, not wedge waiting for a
// batch that starts at its old cursor.
func TestRecordsDeletedBelowCursor(t *testing.T) {
	e := newEnv(t, true)
	e.reopenSmall(t)
	e.append(t, 0, 1000)
	if err := e.ob.Commit("other", 900); err != nil {
		t.Fatal(err)
	}
	first := e.ob.FirstSeq()
	if first <= 1 {
		t.Fatalf("FirstSeq %d: nothing was deleted", first)
	}
	_, stop := e.start(t, Config{BatchSize: 100, FlushInterval: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "cursor past 1000", func() bool { return e.ob.Cursor(DefaultCursor) == 1001 })
	stop()
	if got, w := e.counts(t), wantRange(int(first)-1, 1000); !sameCounts(got, w) {
		t.Fatalf("rows %v, want %v", got, w)
	}
}

// TestGapInOutbox: records lost in a crash that another consumer's cursor had passed leave a
// gap in the outbox. A batch that starts in the gap must not hold the replicator's cursor
// back forever.
func TestGapInOutbox(t *testing.T) {
	e := newEnv(t, true)
	e.reopenSmall(t)
	e.ob.Register(DefaultCursor)
	for i := 0; i < 100; i++ {
		if _, err := e.ob.Append(context.Background(), true, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.ob.Commit("submitter", 101); err != nil {
		t.Fatal(err)
	}
	e.ob.Close()
	// Lose record 100: cut the last segment's last record.
	segs, err := filepath.Glob(filepath.Join(e.dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	sort.Strings(segs)
	st, err := os.Stat(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[len(segs)-1], st.Size()-7); err != nil {
		t.Fatal(err)
	}
	e.reopenSmall(t)
	var evs []attribution.Event
	for i := 100; i < 110; i++ {
		evs = append(evs, event(i))
	}
	if seq, err := e.ob.Append(context.Background(), true, evs...); err != nil || seq != 110 {
		t.Fatalf("append after the gap: last seq %d, %v", seq, err)
	}
	// Batches of 33 records: the fourth read starts at 100, in the gap.
	_, stop := e.start(t, Config{BatchSize: 33, Writers: 1, FlushInterval: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "cursor past 110", func() bool { return e.ob.Cursor(DefaultCursor) == 111 })
	stop()
	w := wantRange(0, 99)
	for k, v := range wantRange(100, 110) {
		if k != "campaigns" {
			w[k] += v
		}
	}
	if got := e.counts(t); !sameCounts(got, w) {
		t.Fatalf("rows %v, want %v", got, w)
	}
}

// TestSeveralGrantsOfOneRole: the ledger gives one grant of role "task" per task a
// registration unlocks, so one registration can have several grants of one role; each has
// its own event id and each must reach the database.
func TestSeveralGrantsOfOneRole(t *testing.T) {
	e := newEnv(t, true)
	at := time.Now().UTC().Truncate(time.Microsecond)
	var evs []attribution.Event
	for n := 0; n < 3; n++ {
		evs = append(evs, attribution.Event{
			ID: fmt.Sprintf("g-r1-7-%d", n), Kind: attribution.KindGrant, At: at, Node: "hk-1", Region: "ap-east",
			Campaign: "c1", Registration: "r1", User: "u1", Role: "task", Value: int64(10 + n),
		})
	}
	if _, err := e.ob.Append(context.Background(), true, evs...); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(t, Config{FlushInterval: 10 * time.Millisecond})
	waitFor(t, 20*time.Second, "cursor past 3", func() bool { return e.ob.Cursor(DefaultCursor) == 4 })
	stop()
	var n, sum int
	if err := e.pool.QueryRow(context.Background(), "SELECT count(*), coalesce(sum(value), 0) FROM grants WHERE registration_id = 'r1'").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 3 || sum != 33 {
		t.Fatalf("grants of r1: %d rows, value %d; want 3 rows, value 33", n, sum)
	}
}

// TestConflictOtherThanIDFails: a replayed event (same id) is a no-op, but a row that
// conflicts with another on a key other than the event id is a real error: it must fail the
// batch loudly rather than be dropped while the cursor moves on.
func TestConflictOtherThanIDFails(t *testing.T) {
	e := newEnv(t, true)
	r, err := New(Config{Logger: quiet()}, e.ob, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg := event(2) // a registration
	if reg.Kind != attribution.KindRegistration {
		t.Fatalf("event(2) is a %v", reg.Kind)
	}
	if err := r.writeBatch(ctx, []outbox.Record{{Seq: 1, Event: reg}}); err != nil {
		t.Fatal(err)
	}
	if err := r.writeBatch(ctx, []outbox.Record{{Seq: 1, Event: reg}}); err != nil {
		t.Fatalf("replay of the same event: %v", err)
	}
	other := reg
	other.ID = "another-event-id" // same registration_id, which is UNIQUE
	err = r.writeBatch(ctx, []outbox.Record{{Seq: 2, Event: other}})
	if err == nil {
		t.Fatal("a row conflicting on registration_id was dropped silently")
	}
	if errors.Is(err, context.Canceled) {
		t.Fatalf("unexpected error: %v", err)
	}
	t.Logf("conflict reported: %v", err)
}
