package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pending is one command waiting to be applied; done is called exactly once
// (unless the batcher is closed first), from a batcher goroutine, and must
// not block.
type pending struct {
	id   cmdID
	cmd  []byte
	done func(outcome, error)
}

// maxInflightEntries bounds the entries being committed at once. Over a WAN a
// commit takes a round trip, so a small bound makes commands queue behind it:
// with 8, the leader region of `refrouter bench cluster` (80 ms to its nearest
// voter) answered in 142 ms at p50; with 64, in 119 ms.
const maxInflightEntries = 64

// batcher groups commands from local callers and forwarded requests into raft
// entries on the leader, with at most maxInflightEntries entries in flight:
// while those are being committed new commands queue up and go out together.
type batcher struct {
	raft     *raft.Raft
	max      int
	linger   time.Duration
	timeout  time.Duration
	reqs     chan *pending
	inflight chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	observe  func(float64) // batch sizes, for metrics
}

func newBatcher(r *raft.Raft, max int, linger, timeout time.Duration, observe func(float64)) *batcher {
	return &batcher{
		raft: r, max: max, linger: linger, timeout: timeout, observe: observe,
		reqs:     make(chan *pending, max),
		inflight: make(chan struct{}, maxInflightEntries),
		done:     make(chan struct{}),
	}
}

func (b *batcher) start() {
	b.wg.Add(1)
	go b.loop()
}

// close stops the loop and waits for in-flight entries to resolve.
func (b *batcher) close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	b.wg.Wait()
}

// shutdownGrace is how long a closing batcher waits for raft to answer an
// entry already in flight.
const shutdownGrace = time.Second

// futureError waits for f. Raft v1.8 never answers a future whose entry was
// already queued to its FSM goroutine when it shut down, so once the batcher
// closes it waits at most shutdownGrace and answers ErrShutdown (callers
// retry idempotently by command id). The goroutine left waiting on such a
// future ends only with the process: raft holds it, not us.
func (b *batcher) futureError(f raft.ApplyFuture) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-b.done:
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(shutdownGrace):
		return ErrShutdown
	}
}

// enqueue hands p to the batcher, blocking while the queue is full.
func (b *batcher) enqueue(ctx context.Context, p *pending) error {
	select {
	case b.reqs <- p:
		return nil
	case <-b.done:
		return ErrShutdown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit applies one command and waits for its outcome.
func (b *batcher) submit(ctx context.Context, id cmdID, cmd []byte) (outcome, error) {
	type res struct {
		o   outcome
		err error
	}
	ch := make(chan res, 1)
	p := &pending{id: id, cmd: cmd, done: func(o outcome, err error) { ch <- res{o, err} }}
	if err := b.enqueue(ctx, p); err != nil {
		return outcome{}, err
	}
	select {
	case r := <-ch:
		return r.o, r.err
	case <-ctx.Done():
		return outcome{}, ctx.Err()
	case <-b.done:
		return outcome{}, ErrShutdown
	}
}

func (b *batcher) drain(batch []*pending) []*pending {
	for len(batch) < b.max {
		select {
		case p := <-b.reqs:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

func (b *batcher) loop() {
	defer b.wg.Done()
	for {
		var first *pending
		select {
		case first = <-b.reqs:
		case <-b.done:
			return
		}
		batch := b.drain(append(make([]*pending, 0, 16), first))
		if b.linger > 0 && len(batch) < b.max && len(b.inflight) > 0 {
			t := time.NewTimer(b.linger)
		linger:
			for len(batch) < b.max {
				select {
				case p := <-b.reqs:
					batch = append(batch, p)
				case <-t.C:
					break linger
				}
			}
			t.Stop()
		}
		select {
		case b.inflight <- struct{}{}:
		case <-b.done:
			for _, p := range batch {
				p.done(outcome{}, ErrShutdown)
			}
			return
		}
		batch = b.drain(batch)
		cmds := make([]command, len(batch))
		for i, p := range batch {
			cmds[i] = command{id: p.id, cmd: p.cmd}
		}
		b.observe(float64(len(cmds)))
		f := b.raft.Apply(encodeEntry(cmds), b.timeout)
		b.wg.Add(1)
		go b.await(f, batch)
	}
}

func (b *batcher) await(f raft.ApplyFuture, batch []*pending) {
	defer b.wg.Done()
	defer func() { <-b.inflight }()
	if err := b.futureError(f); err != nil {
		err = fmt.Errorf("raft apply: %w", err)
		for _, p := range batch {
			p.done(outcome{}, err)
		}
		return
	}
	resp, _ := f.Response().(batchResponse)
	if resp.err != nil || len(resp.outcomes) != len(batch) {
		err := resp.err
		if err == nil {
			err = fmt.Errorf("cluster: %d outcomes for %d commands", len(resp.outcomes), len(batch))
		}
		for _, p := range batch {
			p.done(outcome{}, err)
		}
		return
	}
	for i, p := range batch {
		p.done(resp.outcomes[i], nil)
	}
}
