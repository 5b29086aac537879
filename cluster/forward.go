package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errRetry is the cause of a forwarded command the leader could not apply
// (it lost leadership, or is shutting down); the caller retries.
var errRetry = errors.New("cluster: leader could not apply command")

// serveForward runs the leader's side of one forwarding connection: it reads
// request frames, feeds their commands to the batcher and writes replies as
// they complete (coalesced into frames). It returns when the connection fails
// or is closed.
//
// The batcher calls a command's done from its own goroutines, which must
// never block (see pending), so a reply is queued without waiting: each
// command read takes one of cap(out) credits, given back once its reply
// leaves the queue, so the queue cannot be full when a reply arrives. A peer
// that stops reading replies therefore only stops this connection's reader;
// writeReplies gives up on it after ApplyTimeout and closes it.
func (c *Cluster) serveForward(conn net.Conn) {
	queue := max(forwardReplyQueue, 4*c.cfg.MaxBatch)
	out := make(chan reply, queue)
	credits := make(chan struct{}, queue)
	connDone := make(chan struct{})
	writerDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		c.writeReplies(conn, out, credits, connDone)
	}()
	defer func() {
		close(connDone)
		conn.Close()
		wg.Wait()
	}()
	send := func(r reply) {
		select {
		case out <- r:
		default:
			// Cannot happen while credits bound the queue; never block a
			// batcher goroutine regardless. The peer retries the command
			// under the same id and the dedup window answers it.
			c.log.Warn("cluster: forwarding reply queue full; dropping connection", "remote", conn.RemoteAddr().String())
			conn.Close()
		}
	}
	for {
		frame, err := readFrame(conn, nil)
		if err != nil {
			return
		}
		cmds, err := decodeCommands(frame)
		if err != nil {
			c.log.Warn("cluster: bad forwarding frame", "remote", conn.RemoteAddr().String(), "err", err)
			return
		}
		c.metrics.served.Add(float64(len(cmds)))
		for _, cm := range cmds {
			select {
			case credits <- struct{}{}:
			case <-writerDone:
				return
			case <-c.ctx.Done():
				return
			}
			if c.raft.State() != raft.Leader {
				send(reply{id: cm.id, data: []byte(raft.ErrNotLeader.Error())})
				continue
			}
			id := cm.id
			p := &pending{id: id, cmd: cm.cmd, done: func(o outcome, err error) {
				if err != nil {
					send(reply{id: id, data: []byte(err.Error())})
					return
				}
				send(reply{id: id, ok: true, index: o.index, data: o.result})
			}}
			if err := c.batch.enqueue(c.ctx, p); err != nil {
				send(reply{id: id, data: []byte(err.Error())})
			}
		}
	}
}

// forwardReplyQueue is the least number of replies a forwarding connection
// queues (and of its commands in progress on the leader).
const forwardReplyQueue = 1024

// maxReplyFrameBytes bounds the replies coalesced into one frame (a single
// larger reply still goes alone), well below maxFrameBytes.
const maxReplyFrameBytes = maxFrameBytes / 4

// writeReplies writes the replies queued on out, coalesced into frames, and
// gives one credit back for each reply it takes off the queue. Each write
// must finish within ApplyTimeout: a peer that does not read its replies
// gets its connection closed. It returns when the write fails or connDone is
// closed.
func (c *Cluster) writeReplies(conn net.Conn, out <-chan reply, credits <-chan struct{}, connDone <-chan struct{}) {
	var buf []byte
	rs := make([]reply, 0, 64)
	var carry *reply
	for {
		rs = rs[:0]
		size := 0
		if carry != nil {
			rs = append(rs, *carry)
			size += len(carry.data)
			carry = nil
		} else {
			select {
			case r := <-out:
				<-credits
				rs = append(rs, r)
				size += len(r.data)
			case <-connDone:
				return
			}
		}
	more:
		for len(rs) < c.cfg.MaxBatch {
			select {
			case r := <-out:
				<-credits
				if size+len(r.data) > maxReplyFrameBytes {
					carry = &r
					break more
				}
				rs = append(rs, r)
				size += len(r.data)
			default:
				break more
			}
		}
		buf = appendReplies(append(buf[:0], 0, 0, 0, 0), rs)
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		if err := conn.SetWriteDeadline(time.Now().Add(c.cfg.ApplyTimeout)); err != nil {
			conn.Close()
			return
		}
		if _, err := conn.Write(buf); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log.Warn("cluster: write forwarding replies; closing connection", "remote", conn.RemoteAddr().String(), "err", err)
			}
			conn.Close()
			return
		}
	}
}

// forwarder is the follower's side: pipelined, batched connections to the
// leader, at most one per address. All methods are safe for concurrent use;
// close waits for its goroutines.
type forwarder struct {
	d       dialer
	max     int
	log     *slog.Logger
	mu      sync.Mutex
	conns   map[string]*fwdConn
	dialing map[string]chan struct{}
	closed  bool
	wg      sync.WaitGroup
}

type fwdConn struct {
	conn    net.Conn
	out     chan command
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	waiters map[cmdID][]chan reply
}

func newForwarder(d dialer, max int, log *slog.Logger) *forwarder {
	return &forwarder{d: d, max: max, log: log, conns: make(map[string]*fwdConn), dialing: make(map[string]chan struct{})}
}

func (f *forwarder) get(ctx context.Context, addr string) (*fwdConn, error) {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, ErrShutdown
		}
		if fc := f.conns[addr]; fc != nil {
			f.mu.Unlock()
			return fc, nil
		}
		if ch := f.dialing[addr]; ch != nil {
			f.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		f.dialing[addr] = ch
		// A new leader address: connections to older leaders are closed.
		for a, old := range f.conns {
			old.fail()
			delete(f.conns, a)
		}
		f.mu.Unlock()

		conn, err := f.d.dial(addr, kindForward, 2*time.Second)
		f.mu.Lock()
		delete(f.dialing, addr)
		close(ch)
		if err != nil {
			f.mu.Unlock()
			return nil, err
		}
		if f.closed {
			f.mu.Unlock()
			conn.Close()
			return nil, ErrShutdown
		}
		fc := &fwdConn{conn: conn, out: make(chan command, 4*f.max), done: make(chan struct{}), waiters: make(map[cmdID][]chan reply)}
		f.conns[addr] = fc
		f.wg.Add(2)
		go func() { defer f.wg.Done(); f.writeLoop(fc) }()
		go func() { defer f.wg.Done(); f.readLoop(addr, fc) }()
		f.mu.Unlock()
		return fc, nil
	}
}

func (fc *fwdConn) fail() {
	fc.once.Do(func() {
		close(fc.done)
		fc.conn.Close()
	})
}

// writeLoop sends the queued commands in frames of at most f.max commands
// and maxFrameBytes bytes (applyID refuses a command that cannot fit alone).
func (f *forwarder) writeLoop(fc *fwdConn) {
	var buf []byte
	cmds := make([]command, 0, 64)
	var carry *command
	for {
		cmds = cmds[:0]
		size := binary.MaxVarintLen64
		if carry != nil {
			cmds = append(cmds, *carry)
			size += commandBytes(carry.cmd)
			carry = nil
		} else {
			select {
			case cm := <-fc.out:
				cmds = append(cmds, cm)
				size += commandBytes(cm.cmd)
			case <-fc.done:
				return
			}
		}
	more:
		for len(cmds) < f.max {
			select {
			case cm := <-fc.out:
				if size+commandBytes(cm.cmd) > maxFrameBytes {
					carry = &cm
					break more
				}
				cmds = append(cmds, cm)
				size += commandBytes(cm.cmd)
			default:
				break more
			}
		}
		buf = appendCommands(append(buf[:0], 0, 0, 0, 0), cmds)
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		if _, err := fc.conn.Write(buf); err != nil {
			fc.fail()
			return
		}
	}
}

func (f *forwarder) readLoop(addr string, fc *fwdConn) {
	defer func() {
		fc.fail()
		f.mu.Lock()
		if f.conns[addr] == fc {
			delete(f.conns, addr)
		}
		f.mu.Unlock()
	}()
	for {
		frame, err := readFrame(fc.conn, nil)
		if err != nil {
			return
		}
		rs, err := decodeReplies(frame)
		if err != nil {
			f.log.Warn("cluster: bad forwarding reply", "leader", addr, "err", err)
			return
		}
		fc.mu.Lock()
		for _, r := range rs {
			ws := fc.waiters[r.id]
			if len(ws) == 0 {
				continue
			}
			ws[0] <- r // buffered, one reply per waiter
			if len(ws) == 1 {
				delete(fc.waiters, r.id)
			} else {
				fc.waiters[r.id] = ws[1:]
			}
		}
		fc.mu.Unlock()
	}
}

// call forwards one command to the leader at addr and waits for its reply.
func (f *forwarder) call(ctx context.Context, addr string, id cmdID, cmd []byte) (outcome, error) {
	fc, err := f.get(ctx, addr)
	if err != nil {
		return outcome{}, err
	}
	ch := make(chan reply, 1)
	fc.mu.Lock()
	fc.waiters[id] = append(fc.waiters[id], ch)
	fc.mu.Unlock()
	forget := func() {
		fc.mu.Lock()
		ws := fc.waiters[id]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(fc.waiters, id)
		} else {
			fc.waiters[id] = ws
		}
		fc.mu.Unlock()
	}
	select {
	case fc.out <- command{id: id, cmd: cmd}:
	case <-fc.done:
		forget()
		return outcome{}, fmt.Errorf("forward to %s: connection lost: %w", addr, errRetry)
	case <-ctx.Done():
		forget()
		return outcome{}, ctx.Err()
	}
	select {
	case r := <-ch:
		if !r.ok {
			return outcome{}, fmt.Errorf("forward to %s: %s: %w", addr, r.data, errRetry)
		}
		return outcome{index: r.index, result: r.data}, nil
	case <-fc.done:
		forget()
		return outcome{}, fmt.Errorf("forward to %s: connection lost: %w", addr, errRetry)
	case <-ctx.Done():
		forget()
		return outcome{}, ctx.Err()
	}
}

// close closes all connections and waits for their goroutines.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for a, fc := range f.conns {
		fc.fail()
		delete(f.conns, a)
	}
	f.mu.Unlock()
	f.wg.Wait()
}
