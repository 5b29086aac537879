package node

import "sync"

// clickQueueCap is how many clicks wait for the recorder at most (see
// clickDrainInterval for the rate that allows).
const clickQueueCap = 8192

// clickQueue hands clicks from the redirects to the recorder: a slice under
// a mutex that the recorder swaps for an empty one on each drain. A push is
// an uncontended lock and a copy (a channel send costs about three times as
// much, and the recorder would then take clicks out one at a time).
type clickQueue struct {
	mu   sync.Mutex
	recs []clickRec
}

func newClickQueue() *clickQueue {
	return &clickQueue{recs: make([]clickRec, 0, clickQueueCap)}
}

// push queues a click; false when the queue is full (the click is dropped).
func (q *clickQueue) push(r *clickRec) bool {
	q.mu.Lock()
	ok := len(q.recs) < cap(q.recs)
	if ok {
		q.recs = append(q.recs, *r)
	}
	q.mu.Unlock()
	return ok
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
