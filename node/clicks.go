package node

import (
	"context"
	"errors"
	"time"

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
		if batch, ok = n.appendClick(batch, rec, false); !ok {
			unresolved = append(unresolved, *rec)
		}
	}
	retryUnresolved := func(final bool) {
		keep := unresolved[:0]
		for i := range unresolved {
			rec := &unresolved[i]
			giveUp := final || time.Since(time.Unix(0, rec.at)) > 10*time.Second
			var ok bool
			if batch, ok = n.appendClick(batch, rec, giveUp); !ok {
				keep = append(keep, *rec)
			}
		}
		unresolved = keep
	}
	flush := func() {
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

// appendClick turns a click record into an event, resolving names from the
// local ledger replica, and counts it. It reports false, appending nothing,
// when the replica does not know the inviter yet, unless force is set.
func (n *Node) appendClick(batch []attribution.Event, r *clickRec, force bool) ([]attribution.Event, bool) {
	camp := n.ledger.Campaigns().ByNumber(r.code.Campaign)
	if camp == nil {
		return batch, true // verified against a campaign since replaced: nothing to attribute
	}
	inviter, ok := n.ledger.InviterName(r.code.Campaign, r.code.Inviter)
	if !ok && !force {
		return batch, false
	}
	n.cluster.Counters().Add(camp.ID, 1)
	ev := attribution.Event{
		ID:       newID(time.Unix(0, r.at)),
		Kind:     attribution.KindClick,
		At:       time.Unix(0, r.at).UTC(),
		Node:     n.cfg.Name,
		Region:   n.cfg.Region,
		Campaign: camp.ID,
		Code:     string(r.codeStr[:]),
		Inviter:  inviter,
		UA:       r.userAgent(),
	}
	if r.ip.IsValid() {
		ev.IP = r.ip.String()
	}
	if r.country[0] != 0 {
		ev.Country = string(r.country[:])
	}
	return append(batch, ev), true
}
