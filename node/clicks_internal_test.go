package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
)

func TestEncodeULID(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := [][2]uint64{{0, 0}, {^uint64(0), ^uint64(0)}, {1, 0}, {0, 1}, {1 << 63, 1 << 63}, {1, 1 << 63}}
	for range 1000 {
		cases = append(cases, [2]uint64{rng.Uint64(), rng.Uint64()})
	}
	for _, c := range cases {
		var id ulid.ULID
		for i := range 8 {
			id[i] = byte(c[0] >> (56 - 8*i))
			id[8+i] = byte(c[1] >> (56 - 8*i))
		}
		var got [ulid.EncodedSize]byte
		encodeULID(&got, c[0], c[1])
		if string(got[:]) != id.String() {
			t.Fatalf("encodeULID(%x, %x) = %s, want %s", c[0], c[1], got, id)
		}
	}
}

func TestULIDGen(t *testing.T) {
	g := newULIDGen()
	at := time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC).UnixNano()
	var prev string
	for i := range 5000 {
		t0 := at + int64(i)*10_000 // 100 ids a millisecond
		var text [ulid.EncodedSize]byte
		g.next(t0, &text)
		id, err := ulid.ParseStrict(string(text[:]))
		if err != nil {
			t.Fatalf("id %d %q: %v", i, text, err)
		}
		if id.Time() != uint64(t0/1e6) {
			t.Fatalf("id %d: time %d, want %d", i, id.Time(), t0/1e6)
		}
		if string(text[:]) <= prev {
			t.Fatalf("id %d %s not above %s", i, text, prev)
		}
		prev = string(text[:])
	}
	// At the top of the random part, the next id of the millisecond starts
	// over rather than fail.
	g.hi, g.lo = 0xffff, ^uint64(0)
	var text [ulid.EncodedSize]byte
	g.next(int64(g.ms)*1e6, &text)
	if id, err := ulid.ParseStrict(string(text[:])); err != nil || id.Time() != g.ms || g.hi > 0xffff {
		t.Fatalf("after overflow: %s, %v", text, err)
	}
	g.next(-5, &text) // a clock before 1970: clamped
	if id, err := ulid.ParseStrict(string(text[:])); err != nil || id.Time() != 0 {
		t.Fatalf("negative time: %s, %v", text, err)
	}
	// Two generators do not share their randomness.
	var a, b [ulid.EncodedSize]byte
	newULIDGen().next(at, &a)
	newULIDGen().next(at, &b)
	if a == b {
		t.Fatalf("two generators made the same id %s", a)
	}
}

// testClickRec is a click as the redirect hands it over.
func testClickRec(t testing.TB, n *Node, c links.Code, at time.Time, ip string, country string, ua string) clickRec {
	t.Helper()
	code, err := n.keys.Load().AppendCode(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	r := clickRec{code: c, at: at.UnixNano()}
	if ip != "" {
		r.ip = netip.MustParseAddr(ip)
	}
	copy(r.country[:], country)
	copy(r.codeStr[:], code)
	r.uaLen = uint8(copy(r.ua[:], ua))
	return r
}

// wantClickEvent is the event the recorder made of r before it encoded
// clicks itself (from attribution.Event, strings and EncodeEvent), but for
// the id.
func wantClickEvent(n *Node, r *clickRec, inviter string) attribution.Event {
	ev := attribution.Event{
		Kind:     attribution.KindClick,
		At:       time.Unix(0, r.at).UTC(),
		Node:     n.cfg.Name,
		Region:   n.cfg.Region,
		Campaign: n.ledger.Campaigns().ByNumber(r.code.Campaign).ID,
		Code:     string(r.codeStr[:]),
		Inviter:  inviter,
		UA:       string(bytes.ToValidUTF8(r.ua[:r.uaLen], nil)),
	}
	if r.ip.IsValid() {
		ev.IP = r.ip.String()
	}
	if r.country[0] != 0 {
		ev.Country = string(r.country[:])
	}
	return ev
}

// checkClickRecords reads the records from seq from on and compares them
// with want, ids aside: those must be ULIDs of the click's millisecond.
func checkClickRecords(t *testing.T, o *outbox.Outbox, from uint64, want []attribution.Event) {
	t.Helper()
	recs, err := o.Read(from, len(want)+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		id, err := ulid.ParseStrict(r.Event.ID)
		if err != nil || id.Time() != uint64(max(r.Event.At.UnixMilli(), 0)) { // a clock before 1970 gets 0
			t.Fatalf("record %d: id %q (%v) for a click at %v", i, r.Event.ID, err, r.Event.At)
		}
		got := r.Event
		got.ID = ""
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

func openTestOutbox(t testing.TB) *outbox.Outbox {
	t.Helper()
	o, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// TestRecorderEncodesClicks: the recorder's records are those of the events
// it used to build, and it counts the clicks for gossip.
func TestRecorderEncodesClicks(t *testing.T) {
	n, _ := newTestNode(t, false, "")
	camp := n.ledger.Campaigns().ByID("bench")
	alice := links.Code{Campaign: camp.Number, Inviter: 1}
	res, err := n.applyAndWait(context.Background(), ledger.EncodeIssueLink(ledger.IssueLink{Campaign: "bench", Inviter: "carol"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.DecodeIssueLinkResult(res)
	if err != nil {
		t.Fatal(err)
	}
	carol := links.Code{Campaign: camp.Number, Inviter: l.InviterNumber}
	names := map[links.Code]string{alice: "alice", carol: "carol"}
	at := time.Date(2026, 5, 1, 12, 0, 0, 987654321, time.UTC)
	recs := []clickRec{
		testClickRec(t, n, carol, at, "198.51.100.200", "NL", "carol's friend"),
		testClickRec(t, n, alice, at, "203.0.113.10", "DE", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
		testClickRec(t, n, alice, at, "2001:db8::7", "", ""),
		testClickRec(t, n, alice, at.Add(time.Millisecond), "", "US", strings.Repeat("long agent ", 20)),
		testClickRec(t, n, alice, at.Add(-time.Hour), "::ffff:198.51.100.1", "FR", "Сяоми \xff\xfe broken ☃ \xe2\x98"),
		testClickRec(t, n, alice, time.Unix(0, -1500), "10.0.0.1", "\x00\x00", "pre-epoch clock"),
	}
	o := openTestOutbox(t)
	rc := newClickRecorder(n)
	// A name in alice's cache slot under another key is not hers.
	aliceKey := uint64(alice.Campaign)<<32 | uint64(alice.Inviter)
	rc.names[(aliceKey*0x9e3779b97f4a7c15)>>(64-inviterCacheBits)] = inviterSlot{key: aliceKey + 1<<32, name: "mallory"}
	before := n.cluster.Counters().Total("bench")
	var want []attribution.Event
	for round := range 3 { // the second and third rounds find the names cached
		for i := range recs {
			if !rc.appendClick(&recs[i], false) {
				t.Fatalf("round %d click %d: inviter unresolved", round, i)
			}
			want = append(want, wantClickEvent(n, &recs[i], names[recs[i].code]))
		}
	}
	rc.flushCounts()
	if _, err := o.AppendBatch(context.Background(), false, &rc.batch); err != nil {
		t.Fatal(err)
	}
	checkClickRecords(t, o, 1, want)
	if got := n.cluster.Counters().Total("bench") - before; got != uint64(len(want)) {
		t.Fatalf("gossip counter grew by %d, want %d", got, len(want))
	}
	rc.appendClick(&recs[0], false)
	rc.flushCounts()
	rc.flushCounts()
	if got := n.cluster.Counters().Total("bench") - before; got != uint64(len(want)+1) {
		t.Fatalf("gossip counter grew by %d after one more click, want %d", got, len(want)+1)
	}
	// A campaign number the replica does not know: nothing to record, nothing to retry.
	rc.batch.Reset()
	unknown := testClickRec(t, n, links.Code{Campaign: camp.Number + 1, Inviter: 1}, at, "", "", "")
	if !rc.appendClick(&unknown, false) || rc.batch.Len() != 0 {
		t.Fatalf("click on an unknown campaign: batch of %d", rc.batch.Len())
	}
}

// waitFor polls cond every 5 ms until it holds, failing t after 10 s
// with what it was waiting for.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecorderUnresolvedInviter: a click whose inviter the replica does not
// know yet is kept back, recorded with the name once the replica knows it,
// or without it after unresolvedFor, through the recorder goroutine.
func TestRecorderUnresolvedInviter(t *testing.T) {
	n, _ := newTestNode(t, false, "")
	ctx := context.Background()
	camp := n.ledger.Campaigns().ByID("bench")
	_, st, _ := n.ledger.Campaign("bench")
	next := uint32(st.Inviters) + 1
	rc := newClickRecorder(n)
	r := testClickRec(t, n, links.Code{Campaign: camp.Number, Inviter: next}, time.Now(), "203.0.113.5", "DE", "ua")
	if rc.appendClick(&r, false) || rc.batch.Len() != 0 {
		t.Fatal("click of an unknown inviter recorded")
	}
	if !rc.appendClick(&r, true) || rc.batch.Len() != 1 {
		t.Fatal("forced click of an unknown inviter not recorded")
	}

	seq := n.outbox.LastSeq()
	stale := testClickRec(t, n, links.Code{Campaign: camp.Number, Inviter: next + 1000}, time.Now().Add(-unresolvedFor-time.Second), "", "", "stale")
	n.clicks.push(&r)
	n.clicks.push(&stale)
	// The stale click is given up on at the first retry and recorded with the code alone.
	waitFor(t, "the stale click", func() bool { return n.outbox.LastSeq() > seq })
	checkClickRecords(t, n.outbox, seq+1, []attribution.Event{wantClickEvent(n, &stale, "")})
	time.Sleep(300 * time.Millisecond) // a retry more: the fresh click stays unresolved
	if got := n.outbox.LastSeq(); got != seq+1 {
		t.Fatalf("LastSeq %d: the fresh click was recorded before its inviter was known", got)
	}
	res, err := n.applyAndWait(ctx, ledger.EncodeIssueLink(ledger.IssueLink{Campaign: "bench", Inviter: "bob"}))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := ledger.DecodeIssueLinkResult(res); err != nil || l.InviterNumber != next {
		t.Fatalf("bob is inviter %d (%v), want %d", l.InviterNumber, err, next)
	}
	waitFor(t, "the fresh click", func() bool { return n.outbox.LastSeq() > seq+1 })
	checkClickRecords(t, n.outbox, seq+2, []attribution.Event{wantClickEvent(n, &r, "bob")})
}

// TestRecorderSleepsWhenIdle: with no clicks the recorder stops its tick
// (the queue is marked sleeping), and the first click after that wakes it and
// is recorded; then it goes back to sleep.
func TestRecorderSleepsWhenIdle(t *testing.T) {
	n, _ := newTestNode(t, false, "")
	camp := n.ledger.Campaigns().ByID("bench")
	alice := links.Code{Campaign: camp.Number, Inviter: 1}
	sleeping := func() bool {
		n.clicks.mu.Lock()
		defer n.clicks.mu.Unlock()
		return n.clicks.sleeping
	}
	for round := range 3 {
		waitFor(t, "the idle recorder to sleep", sleeping)
		seq := n.outbox.LastSeq()
		r := testClickRec(t, n, alice, time.Now(), "203.0.113.5", "DE", "ua")
		if !n.clicks.push(&r) {
			t.Fatal("push refused")
		}
		if sleeping() {
			t.Fatalf("round %d: still marked sleeping after a push", round)
		}
		waitFor(t, "the click to be recorded", func() bool { return n.outbox.LastSeq() > seq })
		checkClickRecords(t, n.outbox, seq+1, []attribution.Event{wantClickEvent(n, &r, "alice")})
	}
}

// TestRecordClickAllocs: encoding clicks into the batch and appending it to
// the outbox allocates nothing in steady state.
func TestRecordClickAllocs(t *testing.T) {
	n, _ := newTestNode(t, false, "")
	recs := benchClickRecs(t, n)
	o := openTestOutbox(t)
	rc := newClickRecorder(n)
	i := 0
	record := func() {
		for range clickBatchMax {
			rc.appendClick(&recs[i%len(recs)], false)
			i++
		}
		if _, err := o.AppendBatch(context.Background(), false, &rc.batch); err != nil {
			t.Fatal(err)
		}
		rc.batch.Reset()
		rc.flushCounts()
	}
	for range 20 {
		record()
	}
	if a := testing.AllocsPerRun(50, record); a != 0 && !outboxInvariants(t) {
		t.Fatalf("%v allocations per batch of %d clicks", a, clickBatchMax)
	}
}

// outboxInvariants reports whether the outbox decodes what it is given
// (invariants builds), which allocates: it finds out by giving it a bad one.
func outboxInvariants(t testing.TB) bool {
	var b outbox.Batch
	b.AddEncoded([]byte{2, 1, 0, 0, 0, 0, 200})
	_, err := openTestOutbox(t).AppendBatch(context.Background(), false, &b)
	return err != nil
}

// benchClickRecs returns clicks on the campaign of newTestNode by 32
// inviters, from 4,096 addresses with a few user agents, about 130 a
// millisecond as on a busy node.
func benchClickRecs(tb testing.TB, n *Node) []clickRec {
	tb.Helper()
	ctx := context.Background()
	num := n.ledger.Campaigns().ByID("bench").Number
	uas := []string{
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"wrk",
	}
	var codes []links.Code
	for i := range 32 {
		res, err := n.applyAndWait(ctx, ledger.EncodeIssueLink(ledger.IssueLink{Campaign: "bench", Inviter: fmt.Sprintf("inviter-%d", i)}))
		if err != nil {
			tb.Fatal(err)
		}
		l, err := ledger.DecodeIssueLinkResult(res)
		if err != nil {
			tb.Fatal(err)
		}
		codes = append(codes, links.Code{Campaign: num, Inviter: l.InviterNumber})
	}
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	recs := make([]clickRec, 4096)
	for i := range recs {
		ip := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}).String()
		recs[i] = testClickRec(tb, n, codes[i%len(codes)], base.Add(time.Duration(i)*7700), ip, "DE", uas[i%len(uas)])
	}
	return recs
}

// BenchmarkRecordClick measures the recorder's CPU per click (one op is one
// click): "encode" turns click records into encoded events in the batch
// (ledger lookups, id, encoding, gossip counts); "outbox" also appends the
// batches of 256 to an outbox in a temporary directory, as the recorder does,
// write system calls and segment rolls included.
func BenchmarkRecordClick(b *testing.B) {
	n, _ := newTestNode(b, false, "")
	recs := benchClickRecs(b, n)
	for _, withOutbox := range []bool{false, true} {
		name := "encode"
		if withOutbox {
			name = "outbox"
		}
		b.Run(name, func(b *testing.B) {
			o := openTestOutbox(b)
			o.Register("bench")
			ctx := context.Background()
			rc := newClickRecorder(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := &recs[i%len(recs)]
				r.at += int64(len(recs)) * 7700 * int64(i/len(recs)) // time moves on
				rc.appendClick(r, false)
				r.at -= int64(len(recs)) * 7700 * int64(i/len(recs))
				if rc.batch.Len() < clickBatchMax && i < b.N-1 {
					continue
				}
				rc.flushCounts()
				if withOutbox {
					seq, err := o.AppendBatch(ctx, false, &rc.batch)
					if err != nil {
						b.Fatal(err)
					}
					if seq%(256*400) == 0 { // the replicator's work, not the recorder's
						b.StopTimer()
						o.Commit("bench", seq)
						b.StartTimer()
					}
				}
				rc.batch.Reset()
			}
		})
	}
}

func TestClickQueue(t *testing.T) {
	q := newClickQueue()
	var r clickRec
	for i := 0; i < clickQueueCap; i++ {
		r.clickID = uint64(i)
		if !q.push(&r) {
			t.Fatalf("push %d refused below the cap", i)
		}
		// The recorder is woken once, when clickWakeAt clicks wait.
		if woken := len(q.wake) == 1; woken != (i+1 >= clickWakeAt) {
			t.Fatalf("after %d pushes: wake signalled %v", i+1, woken)
		}
	}
	if q.push(&r) {
		t.Fatal("push accepted over the cap")
	}
	got := q.swap(nil)
	if len(got) != clickQueueCap || got[0].clickID != 0 || got[clickQueueCap-1].clickID != clickQueueCap-1 {
		t.Fatalf("swap returned %d clicks, first %d", len(got), got[0].clickID)
	}
	if q.len() != 0 || !q.push(&r) {
		t.Fatal("queue not empty and open after swap")
	}
	again := q.swap(got)
	if len(again) != 1 {
		t.Fatalf("second swap returned %d clicks, want 1", len(again))
	}
	// An idle recorder's sleep: refused while clicks wait; granted on an
	// empty queue, after which the first push wakes it, below clickWakeAt.
	<-q.wake // the signal of the pushes above
	q.push(&r)
	if q.sleep() {
		t.Fatal("sleep granted with a click queued")
	}
	again = q.swap(again)
	if !q.sleep() {
		t.Fatal("sleep refused on an empty queue")
	}
	q.push(&r)
	if len(q.wake) != 1 {
		t.Fatal("the first push to a sleeping recorder did not wake it")
	}
	<-q.wake
	q.push(&r)
	if len(q.wake) != 0 {
		t.Fatal("a second push woke the recorder again")
	}
	again = q.swap(again)
	// The spare handed back is queued into from now on: no new buffer.
	spare := again
	if n := testing.AllocsPerRun(100, func() {
		q.push(&r)
		spare = q.swap(spare)
	}); n != 0 {
		t.Fatalf("push and swap with a spare allocate %v times", n)
	}
}
