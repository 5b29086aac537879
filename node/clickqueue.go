package node

import "sync"

// clickQueueCap is how many clicks wait for the recorder at most (see
// clickDrainInterval for the rate that allows).
const clickQueueCap = 8192

// clickWakeAt is the number of queued clicks at which a push wakes the
// recorder rather than leave them for its next tick. Under load the recorder
// so takes the clicks a few hundred at a time, while the slots they were
// written to are still in the core's cache, and the redirects keep writing
// to the same few hundred slots: with only the tick, at 120,000 redirects/s
// each buffer filled 1,200 slots (270 KB) between drains and the push that
// copied a click into a slot evicted since the last round stalled on it
// (about 0.1 µs of the redirect's CPU, measured with perf).
const clickWakeAt = 256

// clickQueue hands clicks from the redirects to the recorder: a slice under
// a mutex that the recorder swaps for an empty one on each drain. A push is
// an uncontended lock and a copy (a channel send costs about three times as
// much, and the recorder would then take clicks out one at a time).
type clickQueue struct {
	mu   sync.Mutex
	recs []clickRec
	// wake has a value when clickWakeAt clicks are waiting, or when the
	// first click comes to a sleeping recorder; the recorder drains on it as
	// on its tick.
	wake chan struct{}
	// sleeping is set by an idle recorder that stopped its tick (sleep) and
	// cleared by the push that wakes it.
	sleeping bool
}

func newClickQueue() *clickQueue {
	return &clickQueue{recs: make([]clickRec, 0, clickQueueCap), wake: make(chan struct{}, 1)}
}

// push queues a click; false when the queue is full (the click is dropped).
func (q *clickQueue) push(r *clickRec) bool {
	q.mu.Lock()
	n := len(q.recs)
	ok := n < cap(q.recs)
	if ok {
		q.recs = append(q.recs, *r)
	}
	asleep := q.sleeping
	q.sleeping = false
	q.mu.Unlock()
	if n+1 == clickWakeAt || asleep {
		select {
		case q.wake <- struct{}{}:
		default: // already signalled
		}
	}
	return ok
}

// sleep marks the recorder asleep, so that the next push wakes it, and
// reports true, if no click is queued; with clicks queued it reports false
// and changes nothing.
func (q *clickQueue) sleep() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.recs) > 0 {
		return false
	}
	q.sleeping = true
	return true
}

// swap returns the queued clicks and queues into spare (emptied) from now
// on; the caller hands the returned slice back as spare next time.
func (q *clickQueue) swap(spare []clickRec) []clickRec {
	if cap(spare) < clickQueueCap {
		spare = make([]clickRec, 0, clickQueueCap)
	}
	q.mu.Lock()
	full := q.recs
	q.recs = spare[:0]
	q.mu.Unlock()
	return full
}

// len returns how many clicks are queued.
func (q *clickQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs)
}
