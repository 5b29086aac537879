package node

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/bits"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/refrouter/refrouter/attribution/outbox"
)

// clickDrainInterval is how often the recorder drains the hand-off queue
// while clicks come (an idle recorder sleeps until the next click). At the
// queue's 8,192 clicks it allows about 800,000 clicks/s before a redirect
// finds it full (and drops the click rather than wait).
const clickDrainInterval = 10 * time.Millisecond

// clickBatchMax is the number of clicks the recorder appends to the outbox at
// most in one call.
const clickBatchMax = 256

// unresolvedFor is how long a click whose inviter the local replica does not
// know yet is retried before it is recorded without the inviter's name.
const unresolvedFor = 10 * time.Second

// recordClicks is the click recorder: it drains the redirect's hand-off queue
// in batches, counts clicks per campaign in the gossip counters and appends
// them to the outbox (not fsynced per click; clicks are the one kind of event
// the node may shed under pressure). It returns when ctx is done, after
// recording what is queued.
func (n *Node) recordClicks(ctx context.Context) {
	rc := newClickRecorder(n)
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	tick := time.NewTicker(clickDrainInterval)
	defer tick.Stop()
	asleep := false // tick stopped until a push wakes the recorder
	var spare []clickRec
	drain := func() int {
		recs := n.clicks.swap(spare)
		for i := range recs {
			rc.add(&recs[i])
			if rc.batch.Len() >= clickBatchMax {
				rc.flush()
			}
		}
		spare = recs
		return len(recs)
	}
	for {
		select {
		case <-ctx.Done():
			drain()
			rc.retryUnresolved(true)
			rc.flush()
			return
		case <-retry.C:
			if len(rc.unresolved) > 0 {
				rc.retryUnresolved(false)
				rc.flush()
			}
		case <-tick.C:
			// Drain on a tick rather than waking on each click: a wake-up
			// would cost the redirect a futex call per click; this way the
			// hand-off is a locked buffer append.
			got := drain()
			rc.flush()
			// A tick that found nothing stops the tick until the next click
			// (an idle node would otherwise wake 100 times a second for
			// nothing: 60 % of its idle CPU).
			if got == 0 && n.clicks.sleep() {
				tick.Stop()
				asleep = true
			}
		case <-n.clicks.wake:
			// clickWakeAt clicks are waiting (under load, between ticks), or
			// the first click after an idle spell.
			if asleep {
				tick.Reset(clickDrainInterval)
				asleep = false
			}
			drain()
			rc.flush()
		}
	}
}

// clickRecorder is the recorder goroutine's own state: the batch of encoded
// clicks being built, per-campaign click counts added to the gossip counters
// once per batch, inviter names already resolved, clicks waiting for their
// inviter, and its own ULID generator. It is used by that one goroutine only.
type clickRecorder struct {
	n     *Node
	batch outbox.Batch
	// Clicks whose inviter the local replica does not know yet (a link issued
	// a moment ago through another node): retried for a while, then recorded
	// with the code alone, which names the inviter by number.
	unresolved []clickRec

	// counts[c] is the batch's click count of campaign number c, whose id is
	// ids[c]; touched lists the numbers counted.
	counts  []uint64
	ids     []string
	touched []uint16

	// names caches inviter names as the replica gave them (an inviter's
	// number and name never change), so that a click of a known inviter costs
	// neither the ledger's lock nor a copy of the name.
	names [inviterCacheSize]inviterSlot

	ulids *ulidGen
}

// inviterCacheBits sets the size of the recorder's inviter name cache.
const (
	inviterCacheBits = 12
	inviterCacheSize = 1 << inviterCacheBits
)

// inviterSlot is an entry of the inviter name cache, which is direct-mapped:
// an inviter has one slot, chosen by a hash of its key, and evicts whoever
// held it.
type inviterSlot struct {
	key  uint64 // campaign number<<32 | inviter number; 0 (no such numbers): empty
	name string
}

func newClickRecorder(n *Node) *clickRecorder {
	return &clickRecorder{
		n:     n,
		ulids: newULIDGen(),
	}
}

// ulidGen makes the recorder's event ids: ULIDs with the click's millisecond
// and 80 random bits, monotonic within a millisecond as with
// ulid.Monotonic(entropy, 0): the next id of the same millisecond adds a
// random step in [1, 2^32] to the random part. Its randomness is ChaCha8
// seeded from crypto/rand (cryptographically strong, as the runtime's own),
// and it writes the text straight from its state; together that costs a
// fraction of ulid.New with a MonotonicEntropy and ULID.MarshalTextTo. Where
// ulid.Monotonic fails (ErrMonotonicOverflow, on which ulid.MustNew panics)
// it starts the millisecond over with fresh random bits: ids stay unique, if
// not ordered within that millisecond.
type ulidGen struct {
	rng *rand.ChaCha8
	ms  uint64 // millisecond of the last id
	hi  uint64 // the last id's random part: bits 79-64 (hi < 1<<16)
	lo  uint64 // and bits 63-0
}

func newULIDGen() *ulidGen {
	var seed [32]byte
	crand.Read(seed[:]) // never fails (crypto/rand crashes the program instead)
	return &ulidGen{rng: rand.NewChaCha8(seed)}
}

// maxULIDTime is the last millisecond a ULID can hold.
const maxULIDTime = 1<<48 - 1

// next writes the text of a new id for unix nanoseconds at to dst. Times
// outside what a ULID holds are clamped to it.
func (g *ulidGen) next(at int64, dst *[ulid.EncodedSize]byte) {
	ms := min(uint64(max(at, 0))/1e6, maxULIDTime)
	if ms == g.ms && g.hi|g.lo != 0 {
		var carry uint64
		g.lo, carry = bits.Add64(g.lo, 1+g.rng.Uint64()>>32, 0)
		g.hi += carry
	}
	if ms != g.ms || g.hi|g.lo == 0 || g.hi > 0xffff {
		g.ms = ms
		g.hi, g.lo = g.rng.Uint64()&0xffff, g.rng.Uint64()
	}
	encodeULID(dst, g.ms<<16|g.hi, g.lo)
}

// encodeULID writes the text of the ULID whose 128 bits are h (millisecond
// and the top 16 random bits) and l (the rest).
func encodeULID(dst *[ulid.EncodedSize]byte, h, l uint64) {
	var id ulid.ULID
	binary.BigEndian.PutUint64(id[:8], h)
	binary.BigEndian.PutUint64(id[8:], l)
	id.MarshalTextTo(dst[:]) // cannot fail: dst is EncodedSize long
}

// add puts a click into the batch, or among the unresolved ones.
func (rc *clickRecorder) add(rec *clickRec) {
	if !rc.appendClick(rec, false) {
		rc.unresolved = append(rc.unresolved, *rec)
	}
}

// retryUnresolved tries the unresolved clicks again, recording those whose
// inviter is known now and, past unresolvedFor or when final is set, all.
func (rc *clickRecorder) retryUnresolved(final bool) {
	keep := rc.unresolved[:0]
	for i := range rc.unresolved {
		rec := &rc.unresolved[i]
		giveUp := final || time.Since(time.Unix(0, rec.at)) > unresolvedFor
		if !rc.appendClick(rec, giveUp) {
			keep = append(keep, *rec)
		}
		if rc.batch.Len() >= clickBatchMax {
			rc.flush()
		}
	}
	clear(rc.unresolved[len(keep):])
	rc.unresolved = keep
}

// flush adds the batch's counts to the gossip counters and appends its clicks
// to the outbox, shedding them when the outbox is over its bound.
func (rc *clickRecorder) flush() {
	n := rc.n
	rc.flushCounts()
	if rc.batch.Len() == 0 {
		return
	}
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := n.outbox.AppendBatch(actx, false, &rc.batch)
	cancel()
	switch {
	case errors.Is(err, outbox.ErrFull):
		n.metrics.clicksShed.Add(float64(rc.batch.Len()))
		if n.replicator != nil {
			n.replicator.ShedClicks(rc.batch.Len())
		}
		n.log.Warn("outbox over its bound: clicks shed", "clicks", rc.batch.Len())
	case err != nil:
		n.metrics.clicksShed.Add(float64(rc.batch.Len()))
		n.log.Error("record clicks", "err", err)
	}
	rc.batch.Reset()
}

// flushCounts adds the batch's click counts to the gossip counters.
func (rc *clickRecorder) flushCounts() {
	for _, c := range rc.touched {
		rc.n.cluster.Counters().Add(rc.ids[c], rc.counts[c])
		rc.counts[c] = 0
	}
	rc.touched = rc.touched[:0]
}

// count counts a click on campaign number num, whose id is id.
func (rc *clickRecorder) count(num uint16, id string) {
	if int(num) >= len(rc.counts) {
		rc.counts = append(rc.counts, make([]uint64, int(num)+1-len(rc.counts))...)
		rc.ids = append(rc.ids, make([]string, int(num)+1-len(rc.ids))...)
	}
	if rc.counts[num] == 0 {
		rc.touched = append(rc.touched, num)
		rc.ids[num] = id
	}
	rc.counts[num]++
}

// inviterName returns the name of the click's inviter from the local replica.
func (rc *clickRecorder) inviterName(r *clickRec) (string, bool) {
	key := uint64(r.code.Campaign)<<32 | uint64(r.code.Inviter)
	slot := &rc.names[(key*0x9e3779b97f4a7c15)>>(64-inviterCacheBits)]
	if slot.key == key && key != 0 {
		return slot.name, true
	}
	name, ok := rc.n.ledger.InviterName(r.code.Campaign, r.code.Inviter)
	if !ok {
		return "", false
	}
	*slot = inviterSlot{key: key, name: name}
	return name, true
}

// appendClick encodes a click record into the batch as a click event,
// resolving names from the local ledger replica, and counts it. It reports
// false, adding nothing, when the replica does not know the inviter yet,
// unless force is set.
func (rc *clickRecorder) appendClick(r *clickRec, force bool) bool {
	n := rc.n
	camp := n.ledger.Campaigns().ByNumber(r.code.Campaign)
	if camp == nil {
		return true // verified against a campaign since replaced: nothing to attribute
	}
	inviter, ok := rc.inviterName(r)
	if !ok && !force {
		return false
	}
	rc.count(r.code.Campaign, camp.ID)
	var id [ulid.EncodedSize]byte
	rc.ulids.next(r.at, &id)
	ua := r.ua[:r.uaLen]
	if !utf8.Valid(ua) {
		ua = bytes.ToValidUTF8(ua, nil) // rare: allocates only for a broken user agent
	}
	c := outbox.Click{
		At:       r.at,
		ID:       id[:],
		Node:     n.cfg.Name,
		Region:   n.cfg.Region,
		Campaign: camp.ID,
		Code:     r.codeStr[:],
		Inviter:  inviter,
		IP:       r.ip,
		UA:       ua,
	}
	if r.country[0] != 0 {
		c.Country = r.country[:]
	}
	rc.batch.AddClick(&c)
	return true
}
