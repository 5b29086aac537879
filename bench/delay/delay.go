// Package delay simulates the latency between regions for local multi-node
// runs, since the kernel here has no netem: Proxy is a TCP proxy that
// delivers every chunk of bytes a fixed one-way delay after it was read, in
// each direction, so a round trip through it takes 2×Delay more.
//
// What is delayed: everything that goes over TCP through a Proxy (HTTP,
// raft, the forwarding RPC, memberlist's TCP push-pull and fallback
// probes). What is not: UDP (memberlist's probes and gossip), so failure
// detection still sees loopback round trips; and the TCP handshake, which
// completes at the proxy at once (the first bytes pay the delay instead).
//
// A Proxy delays every connection to one target. Mesh runs one Proxy per
// ordered pair of nodes in different regions and tells a node's dialer which
// address to dial (Route), so each pair pays its own RTT.
//
// Each direction timestamps chunks as it reads them and writes each at
// ts+Delay, so bytes keep their order and many chunks are in flight at
// once: throughput is not limited to one chunk per delay (up to
// MaxInFlight chunks of up to BufferSize bytes per direction).
package delay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInvalidConfig is returned (wrapped) by New for a bad Config.
var ErrInvalidConfig = errors.New("delay: invalid config")

// Defaults for Config.
const (
	DefaultListen     = "127.0.0.1:0"
	DefaultBufferSize = 32 << 10
	// MaxInFlight bounds the chunks read but not yet delivered per direction.
	MaxInFlight = 1024
	dialTimeout = 5 * time.Second
)

// Config configures a Proxy.
type Config struct {
	// Listen is the listen address (default DefaultListen).
	Listen string
	// Target is the host:port every accepted connection is forwarded to.
	Target string
	// Delay is the one-way delay added in each direction (RTT = 2×Delay).
	Delay time.Duration
	// BufferSize is the largest chunk read at once (default 32 KiB).
	BufferSize int
	// Logger receives connection errors at debug level (default: none).
	Logger *slog.Logger
}

// Proxy is a running delaying TCP proxy. Its methods are safe for
// concurrent use. It owns its listener, the accepted and dialled
// connections and all goroutines, and Close releases them all.
type Proxy struct {
	cfg   Config
	ln    net.Listener
	delay atomic.Int64 // one-way delay in ns
	log   *slog.Logger

	mu     sync.Mutex
	links  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New listens on cfg.Listen and starts forwarding to cfg.Target.
func New(cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, fmt.Errorf("%w: no target", ErrInvalidConfig)
	}
	if cfg.Delay < 0 || cfg.BufferSize < 0 {
		return nil, fmt.Errorf("%w: negative delay %v or buffer size %d", ErrInvalidConfig, cfg.Delay, cfg.BufferSize)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %q for proxy to %q: %w", cfg.Listen, cfg.Target, err)
	}
	p := &Proxy{cfg: cfg, ln: ln, log: cfg.Logger.With("proxy", ln.Addr().String(), "target", cfg.Target),
		links: make(map[*link]struct{})}
	p.delay.Store(int64(cfg.Delay))
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the proxy listens on (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Delay returns the current one-way delay.
func (p *Proxy) Delay() time.Duration { return time.Duration(p.delay.Load()) }

// SetDelay changes the one-way delay for chunks read from now on (chunks in
// flight keep theirs, so order is kept only if the delay does not shrink
// by more than the gap between chunks; shrink it between phases of a test).
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(max(d, 0))) }

// Close stops accepting, closes every proxied connection and waits for all
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	var err error
	if !already {
		if cerr := p.ln.Close(); cerr != nil {
			err = fmt.Errorf("close proxy listener %s: %w", p.Addr(), cerr)
		}
	}
	for _, l := range links {
		l.teardown()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Debug("accept", "err", err)
			}
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// link is one proxied connection pair.
type link struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
	open           atomic.Int32 // directions still running
}

func (l *link) teardown() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	})
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.cfg.Target, dialTimeout)
	if err != nil {
		p.log.Debug("dial target", "err", err)
		client.Close()
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.teardown()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	l.open.Store(2)
	p.wg.Add(4)
	go p.pipe(l, client, server)
	go p.pipe(l, server, client)
	<-l.done
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pipe starts the reader and the writer of one direction.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	ch := make(chan chunk, MaxInFlight)
	go p.read(l, src, ch)
	p.write(l, dst, ch)
}

// read timestamps each chunk as it arrives; it closes ch at EOF.
func (p *Proxy) read(l *link, src net.Conn, ch chan<- chunk) {
	defer p.wg.Done()
	buf := make([]byte, p.cfg.BufferSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c := chunk{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(p.Delay())}
			select {
			case ch <- c:
			case <-l.done:
				return
			}
		}
		if err != nil {
			close(ch)
			if !errors.Is(err, io.EOF) {
				p.log.Debug("read", "err", err)
				l.teardown()
			}
			return
		}
	}
}

// write delivers each chunk at its due time, then half-closes dst.
func (p *Proxy) write(l *link, dst net.Conn, ch <-chan chunk) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var c chunk
		var ok bool
		select {
		case <-l.done:
			return
		case c, ok = <-ch:
		}
		if !ok {
			break
		}
		if d := time.Until(c.due); d > 0 {
			timer.Reset(d)
			select {
			case <-l.done:
				return
			case <-timer.C:
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			p.log.Debug("write", "err", err)
			l.teardown()
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // the peer sees EOF after the last byte
	}
	if l.open.Add(-1) == 0 {
		l.teardown()
	}
}
