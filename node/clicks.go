package node

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"io"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
)

// clickDrainInterval is how often the recorder drains the hand-off queue. At
// the queue's 8,192 clicks it allows about 800,000 clicks/s before a redirect
// finds it full (and drops the click rather than wait).
const clickDrainInterval = 10 * time.Millisecond

// recordClicks is the click recorder: it drains the redirect's hand-off queue
// in batches, counts clicks per campaign in the gossip counters and appends
// them to the outbox (not fsynced per click; clicks are the one kind of event
// the node may shed under pressure). It returns when ctx is done, after
// recording what is queued.
func (n *Node) recordClicks(ctx context.Context) {
	rc := newClickRecorder()
	batch := make([]attribution.Event, 0, 256)
	// Clicks whose inviter the local replica does not know yet (a link issued
	// a moment ago through another node): retried for a while, then recorded
	// with the code alone, which names the inviter by number.
	var unresolved []clickRec
	retry := time.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	tick := time.NewTicker(clickDrainInterval)
	defer tick.Stop()
	add := func(rec *clickRec) {
		var ok bool
		if batch, ok = n.appendClick(rc, batch, rec, false); !ok {
			unresolved = append(unresolved, *rec)
		}
	}
	retryUnresolved := func(final bool) {
		keep := unresolved[:0]
		for i := range unresolved {
			rec := &unresolved[i]
			giveUp := final || time.Since(time.Unix(0, rec.at)) > 10*time.Second
			var ok bool
			if batch, ok = n.appendClick(rc, batch, rec, giveUp); !ok {
				keep = append(keep, *rec)
			}
		}
		unresolved = keep
	}
	flush := func() {
		rc.flushCounts(n)
		if len(batch) == 0 {
			return
		}
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.outbox.Append(actx, false, batch...)
		cancel()
		switch {
		case errors.Is(err, outbox.ErrFull):
			n.metrics.clicksShed.Add(float64(len(batch)))
			if n.replicator != nil {
				n.replicator.ShedClicks(len(batch))
			}
			n.log.Warn("outbox over its bound: clicks shed", "clicks", len(batch))
		case err != nil:
			n.metrics.clicksShed.Add(float64(len(batch)))
			n.log.Error("record clicks", "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case rec := <-n.clicks:
					add(&rec)
				default:
					retryUnresolved(true)
					flush()
					return
				}
			}
		case <-retry.C:
			if len(unresolved) > 0 {
				retryUnresolved(false)
				flush()
			}
		case <-tick.C:
			// Drain on a tick rather than parking on the channel: a parked
			// receiver costs the redirect a goroutine wake-up (a futex call)
			// per click; this way the hand-off is a plain buffer write.
			for drained := 0; drained < cap(n.clicks); {
				select {
				case rec := <-n.clicks:
					add(&rec)
					drained++
					if len(batch) == cap(batch) {
						flush()
					}
					continue
				default:
				}
				break
			}
			flush()
		}
	}
}

// clickRecorder is the recorder goroutine's own state: per-campaign click
// counts added to the gossip counters once per batch, strings reused across
// clicks (user agents, addresses and codes repeat: a shared link is clicked
// by many, a carrier NAT carries many viewers), and its own ULID entropy.
// It is used by that one goroutine only.
type clickRecorder struct {
	counts  map[string]uint64
	strs    interner
	entropy io.Reader
	scratch []byte
}

func newClickRecorder() *clickRecorder {
	return &clickRecorder{
		counts:  map[string]uint64{},
		strs:    interner{m: map[string]string{}, max: 16384},
		entropy: ulid.Monotonic(crand.Reader, 0),
	}
}

// flushCounts adds the batch's click counts to the gossip counters.
func (rc *clickRecorder) flushCounts(n *Node) {
	for id, c := range rc.counts {
		n.cluster.Counters().Add(id, c)
	}
	clear(rc.counts)
}

// interner returns strings equal to the bytes it is given, reusing those it
// returned before; it forgets everything when it holds max strings.
type interner struct {
	m   map[string]string
	max int
}

func (in *interner) get(b []byte) string {
	if s, ok := in.m[string(b)]; ok { // the conversion does not allocate here
		return s
	}
	if len(in.m) >= in.max {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}

// appendClick turns a click record into an event, resolving names from the
// local ledger replica, and counts it. It reports false, appending nothing,
// when the replica does not know the inviter yet, unless force is set.
func (n *Node) appendClick(rc *clickRecorder, batch []attribution.Event, r *clickRec, force bool) ([]attribution.Event, bool) {
	camp := n.ledger.Campaigns().ByNumber(r.code.Campaign)
	if camp == nil {
		return batch, true // verified against a campaign since replaced: nothing to attribute
	}
	inviter, ok := n.ledger.InviterName(r.code.Campaign, r.code.Inviter)
	if !ok && !force {
		return batch, false
	}
	rc.counts[camp.ID]++
	at := time.Unix(0, r.at)
	ev := attribution.Event{
		ID:       ulid.MustNew(ulid.Timestamp(at), rc.entropy).String(),
		Kind:     attribution.KindClick,
		At:       at.UTC(),
		Node:     n.cfg.Name,
		Region:   n.cfg.Region,
		Campaign: camp.ID,
		Code:     rc.strs.get(r.codeStr[:]),
		Inviter:  inviter,
		UA:       rc.userAgent(r),
	}
	if r.ip.IsValid() {
		rc.scratch = r.ip.AppendTo(rc.scratch[:0])
		ev.IP = rc.strs.get(rc.scratch)
	}
	if r.country[0] != 0 {
		ev.Country = rc.strs.get(r.country[:])
	}
	return append(batch, ev), true
}

// userAgent returns the recorded user agent of a click as valid UTF-8.
func (rc *clickRecorder) userAgent(r *clickRec) string {
	ua := r.ua[:r.uaLen]
	if utf8.Valid(ua) {
		return rc.strs.get(ua)
	}
	return string(bytes.ToValidUTF8(ua, nil))
}
