// Package edgehttp serves the share-link redirect straight off the TCP
// connection, below any HTTP framework, and hands every other request, with
// its connection, to a fallback server (fasthttp in refrouter).
//
// Why it exists: on the redirect path the kernel's TCP work is the same for
// every server, so what a server adds per request decides whether it costs
// more CPU than nginx. fasthttp parses every header, sets read and write
// deadlines (timer updates and clock reads) and builds its response header
// per request; this package reads the few headers the redirect uses, refreshes
// the read deadline at most once a second and sets a write deadline only for
// a write that has to wait (on a raw socket), reads the clock once per batch of
// requests, and writes a response the handler appended in one piece. It
// accepts only a strict subset of HTTP/1.1 (see parseRequest); a request
// outside it, or for a path the fast path does not serve, goes to the
// fallback with every byte already read, so the two servers together speak
// the fallback's HTTP and this package never has to reject anything itself.
package edgehttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what a Server serves itself and how long it waits.
type Config struct {
	// Match reports whether the fast path answers requests for path (the
	// request target up to '?'). Requests for other paths go to the fallback.
	Match func(path []byte) bool
	// Serve appends the whole response to r to dst (status line, headers
	// and, except for HEAD, the body) and returns the extended slice. It runs
	// on the connection's goroutine and must not retain r's slices.
	Serve func(dst []byte, r *Request) []byte
	// IdleTimeout closes a connection that waits this long for a request;
	// default 60 s.
	IdleTimeout time.Duration
	// ReadTimeout bounds the time from the first byte of a request to its
	// end, and any write; default 10 s.
	ReadTimeout time.Duration
	// Panic, when set, is told of a panic in Serve; the connection is closed
	// and the server goes on.
	Panic func(v any)
}

// readBufSize is the read buffer of a connection, and so the largest request
// head the fast path takes; larger ones go to the fallback, which has its own
// limit and answers 431 beyond it.
const readBufSize = 4096

// Server serves the fast path on the connections it accepts and feeds the
// rest to the listener returned by Fallback. Start it with Serve and stop it
// with Shutdown.
type Server struct {
	cfg Config
	fb  *fallbackListener

	date atomic.Pointer[httpDate] // Date of the current second
	bufs sync.Pool                // of *connBuf

	served    atomic.Uint64 // requests answered on the fast path
	buffers   atomic.Uint64 // connBufs allocated
	handedOff atomic.Uint64 // connections handed to the fallback

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	closing atomic.Bool
	forced  atomic.Bool    // Shutdown's ctx is done: writes that wait fail
	wg      sync.WaitGroup // connection goroutines
}

// New returns a server for cfg. Match and Serve are required.
func New(cfg Config) (*Server, error) {
	if cfg.Match == nil || cfg.Serve == nil {
		return nil, errors.New("edgehttp: Config.Match and Config.Serve are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	return &Server{
		cfg:   cfg,
		fb:    &fallbackListener{ch: make(chan net.Conn), done: make(chan struct{})},
		conns: map[net.Conn]struct{}{},
	}, nil
}

// Stats counts what a Server did since New.
type Stats struct {
	// Served is the number of requests answered on the fast path.
	Served uint64
	// HandedOff is the number of connections handed to the fallback.
	HandedOff uint64
	// Buffers is the number of read-and-answer buffer pairs (4 KiB and up)
	// allocated. Connections borrow a pair only while they have a request in
	// hand, so this follows the requests served at once (and the pool's
	// refills after garbage collections), not the connections kept open.
	Buffers uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Served: s.served.Load(), HandedOff: s.handedOff.Load(), Buffers: s.buffers.Load()}
}

// Fallback returns the listener on which connections with a request the fast
// path does not answer arrive; hand it to the fallback server's Serve. A
// connection comes with the bytes already read from it replayed first.
// Closing it (the fallback server does on shutdown) closes connections
// handed off afterwards.
func (s *Server) Fallback() net.Listener { return s.fb }

// Serve accepts connections on ln until ln is closed or Shutdown is called,
// and returns nil after Shutdown, the accept error otherwise. A connection
// that implements syscall.Conn is read and written through its socket
// directly (see connIO), so it must not buffer or transform what passes
// through it, as *net.TCPConn does not, and nothing but the server may close
// it until the server hands it to the fallback or Shutdown returns.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return nil
	}
	s.ln = ln
	addr := ln.Addr()
	s.fb.addr.Store(&addr)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		go s.serveConn(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track registers c as served here; false once the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, lets each connection finish the requests it has
// read (answering them), closes it, and waits for that until ctx is done,
// when it cuts short whatever is left waiting to read or write (those
// connections are closed without their answers) and waits for the
// connections' goroutines to end. Connections already handed to the
// fallback are the fallback's to shut down. The fallback listener stays open
// so that connections handed off during the drain are still served.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	now := time.Now()
	for c := range s.conns {
		// Wakes a connection waiting for its next request; one busy with a
		// request sees closing after answering it. A connection reads
		// closing after its own deadline update, so this one wins.
		c.SetReadDeadline(now)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		// Wake whatever still waits, for a request or to write, with a
		// deadline in the past; each connection's goroutine then closes
		// it. (Only that goroutine closes a connection: connIO uses the
		// socket's descriptor without holding a reference.)
		s.mu.Lock()
		s.forced.Store(true) // before the deadlines (see connIO.write)
		past := time.Unix(1, 0)
		for c := range s.conns {
			c.SetDeadline(past)
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// serveConn is a connection's goroutine: read, answer every whole fast
// request read, write the answers in one piece, repeat; hand the connection
// off at the first request that is not fast.
func (s *Server) serveConn(c net.Conn) {
	handedOff := false
	defer func() {
		if v := recover(); v != nil && s.cfg.Panic != nil {
			s.cfg.Panic(v)
		}
		if !handedOff {
			c.Close()
		}
		s.untrack(c)
	}()
	cio := newConnIO(c)
	cio.stop = &s.forced
	// The buffers are the server's, lent to a connection while it has a
	// request in hand (see connBuf); a connection whose reads go through
	// net.Conn keeps its pair while it waits, as its read waits with them.
	lend := cio.canWait()
	var cb *connBuf
	defer func() {
		if cb != nil {
			s.putBuf(cb)
		}
	}()
	var (
		req      Request
		date     []byte
		have     int       // bytes of buf holding unanswered input
		started  time.Time // when the first byte of buf[:have] arrived
		deadline time.Time // the connection's current deadline
		now      = wallNow()
	)
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		req.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	for {
		// Read deadline upkeep: the idle timeout while waiting for a
		// request, the read timeout from the first byte of one; changed only
		// when it moves by more than a second (each change is a timer
		// update). Writes set their own deadline (see connIO.write).
		want := now.Add(s.cfg.IdleTimeout)
		if have > 0 {
			want = started.Add(s.cfg.ReadTimeout)
		}
		if d := want.Sub(deadline); d > time.Second || d < 0 {
			c.SetReadDeadline(want)
			deadline = want
		}
		if s.closing.Load() {
			return
		}
		if cb == nil {
			cb = s.getBuf()
		}
		buf := cb.in[:]
		n, err := cio.read(buf[have:])
		if err == errNotReady {
			if have == 0 {
				s.putBuf(cb)
				cb = nil
				// Nor keep the last request's slices of a buffer that is
				// no longer this connection's while it waits.
				req = Request{Remote: req.Remote}
			}
			if cio.waitReadable() != nil {
				return // timeout or Shutdown's wake-up
			}
			continue
		}
		if n == 0 {
			_ = err // EOF, reset, timeout or Shutdown's wake-up: done
			return
		}
		now = wallNow()
		date = s.httpDate(now)
		if have == 0 {
			started = now
		} else if now.Sub(started) > s.cfg.ReadTimeout {
			// The deadline covers reads that wait; this, a request whose
			// bytes trickle in just fast enough never to make a read wait.
			return
		}
		have += n
		out := cb.out[:0]
		start, answered := 0, 0
		for start < have {
			res, used := parseRequest(buf[start:have], &req, s.cfg.Match)
			if res == needMore {
				break
			}
			if res == fallback {
				s.served.Add(uint64(answered))
				handedOff = s.handoff(c, cio, out, buf[start:have])
				return
			}
			req.Now, req.Date = now, date
			out = s.cfg.Serve(out, &req)
			answered++
			start += used
			if req.Close {
				s.served.Add(uint64(answered))
				cio.write(out, now.Add(s.cfg.ReadTimeout))
				return
			}
		}
		if answered > 0 {
			s.served.Add(uint64(answered))
		}
		if start > 0 {
			have = copy(buf, buf[start:have])
			started = now
		}
		if have == len(buf) {
			// A request head larger than the fast path reads: the fallback
			// answers it (431, or serves it if within its own limit).
			handedOff = s.handoff(c, cio, out, buf[:have])
			return
		}
		cb.out = out
		if len(out) > 0 {
			if err := cio.write(out, now.Add(s.cfg.ReadTimeout)); err != nil {
				return
			}
			if have == 0 && lend {
				s.putBuf(cb)
				cb = nil
			}
			// Let the other connections' goroutines run before reading
			// again: under load the client's next request has usually
			// arrived by then, and the read finds it instead of costing a
			// read that returns EAGAIN, a park and a poller wake-up (with
			// wrk -c64 reads per request fall from 2.0 to 1.04; when idle
			// it costs one pass through the scheduler).
			runtime.Gosched()
		}
	}
}

// connBuf is the read buffer and the answer buffer of a connection with a
// request in hand. The server lends them from a pool and takes them back
// when the connection has answered everything it read, so that under load
// the few pairs in use stay in the core's cache and the kernel copies each
// request and answer to and from warm lines, as nginx's per-request pools do,
// instead of each connection touching cold buffers of its own; an idle
// keep-alive connection holds no buffers at all.
type connBuf struct {
	in  [readBufSize]byte
	out []byte
}

// maxPooledOut is the largest answer buffer the pool keeps; a connection
// that grew a larger one (many pipelined answers at once) drops it.
const maxPooledOut = 64 << 10

func (s *Server) getBuf() *connBuf {
	if cb, ok := s.bufs.Get().(*connBuf); ok {
		return cb
	}
	s.buffers.Add(1)
	return &connBuf{out: make([]byte, 0, 1024)}
}

func (s *Server) putBuf(cb *connBuf) {
	if cap(cb.out) > maxPooledOut {
		cb.out = make([]byte, 0, 1024)
	}
	s.bufs.Put(cb)
}

// httpDate is the Date header value of one second.
type httpDate struct {
	sec int64
	b   []byte
}

// httpDate returns now as an HTTP date, formatted once per second.
func (s *Server) httpDate(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &httpDate{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	s.date.Store(d)
	return d.b
}

// handoff writes the answers already made, then gives c, with the unanswered
// bytes replayed first, to the fallback. It reports whether the fallback took
// the connection (when not, the caller closes it).
func (s *Server) handoff(c net.Conn, cio *connIO, answered, unanswered []byte) bool {
	if len(answered) > 0 {
		if err := cio.write(answered, time.Now().Add(s.cfg.ReadTimeout)); err != nil {
			return false
		}
	}
	c.SetDeadline(time.Time{}) // the fallback sets its own
	s.handedOff.Add(1)
	return s.fb.deliver(&prefixConn{Conn: c, prefix: append([]byte(nil), unanswered...)})
}

// prefixConn replays bytes read before the hand-off, then reads the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// Read implements net.Conn.
func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// fallbackListener is the listener the fallback server accepts handed-off
// connections from.
type fallbackListener struct {
	addr atomic.Pointer[net.Addr]
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// deliver passes c to the fallback server's accept loop; false once the
// listener is closed.
func (l *fallbackListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept implements net.Listener.
func (l *fallbackListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *fallbackListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener: the address of the listener Serve accepts on.
func (l *fallbackListener) Addr() net.Addr {
	if a := l.addr.Load(); a != nil {
		return *a
	}
	return &net.TCPAddr{}
}
