package node

import (
	"context"
	"errors"
	"time"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
)

// recordClicks is the click recorder: it drains the redirect's hand-off queue
// in batches, counts clicks per campaign in the gossip counters and appends
// them to the outbox (not fsynced per click; clicks are the one kind of event
// the node may shed under pressure). It returns when ctx is done, after
// recording what is queued.
func (n *Node) recordClicks(ctx context.Context) {
	batch := make([]attribution.Event, 0, 256)
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
					batch = n.appendClick(batch, &rec)
				default:
					flush()
					return
				}
			}
		case rec := <-n.clicks:
			batch = n.appendClick(batch, &rec)
		drain:
			for len(batch) < cap(batch) {
				select {
				case rec := <-n.clicks:
					batch = n.appendClick(batch, &rec)
				default:
					break drain
				}
			}
			flush()
		}
	}
}

// appendClick turns a click record into an event, resolving names from the
// local ledger replica, and counts it.
func (n *Node) appendClick(batch []attribution.Event, r *clickRec) []attribution.Event {
	camp := n.ledger.Campaigns().ByNumber(r.code.Campaign)
	if camp == nil {
		return batch
	}
	n.cluster.Counters().Add(camp.ID, 1)
	inviter, _ := n.ledger.InviterName(r.code.Campaign, r.code.Inviter)
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
	return append(batch, ev)
}
