package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Connection kinds: the first byte on the cluster port.
const (
	kindRaft    byte = 'R'
	kindForward byte = 'F'
	kindStatus  byte = 'S'
	kindLeave   byte = 'L'
)

const (
	nonceLen         = 32
	handshakeTimeout = 5 * time.Second
)

// ErrUnauthenticated reports a peer on the cluster port that could not prove
// the cluster key.
var ErrUnauthenticated = errors.New("cluster: peer failed cluster key authentication")

func handshakeMAC(key []byte, label string, kind byte, nc, ns []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write([]byte{kind})
	m.Write(nc)
	m.Write(ns)
	return m.Sum(nil)
}

// clientHandshake runs the dialer's side: kind byte and nonce out, server
// nonce and proof in, client proof out.
func clientHandshake(conn net.Conn, kind byte, key []byte) error {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return fmt.Errorf("set handshake deadline: %w", err)
	}
	hello := make([]byte, 1+nonceLen)
	hello[0] = kind
	if _, err := rand.Read(hello[1:]); err != nil {
		return fmt.Errorf("client nonce: %w", err)
	}
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	resp := make([]byte, nonceLen+sha256.Size)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return fmt.Errorf("read server proof: %w", err)
	}
	nc, ns := hello[1:], resp[:nonceLen]
	if !hmac.Equal(resp[nonceLen:], handshakeMAC(key, "refrouter-cluster-server", kind, nc, ns)) {
		return ErrUnauthenticated
	}
	if _, err := conn.Write(handshakeMAC(key, "refrouter-cluster-client", kind, nc, ns)); err != nil {
		return fmt.Errorf("write client proof: %w", err)
	}
	return conn.SetDeadline(time.Time{})
}

// serverHandshake runs the listener's side and returns the connection kind.
func serverHandshake(conn net.Conn, key []byte) (byte, error) {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return 0, fmt.Errorf("set handshake deadline: %w", err)
	}
	hello := make([]byte, 1+nonceLen)
	if _, err := io.ReadFull(conn, hello[:1]); err != nil {
		return 0, fmt.Errorf("read hello: %w", err)
	}
	kind := hello[0]
	switch kind {
	case kindRaft, kindForward, kindStatus, kindLeave:
	default:
		return 0, fmt.Errorf("connection kind %q: %w", kind, ErrUnauthenticated)
	}
	if _, err := io.ReadFull(conn, hello[1:]); err != nil {
		return 0, fmt.Errorf("read hello: %w", err)
	}
	resp := make([]byte, nonceLen, nonceLen+sha256.Size)
	if _, err := rand.Read(resp); err != nil {
		return 0, fmt.Errorf("server nonce: %w", err)
	}
	nc, ns := hello[1:], resp[:nonceLen]
	resp = append(resp, handshakeMAC(key, "refrouter-cluster-server", kind, nc, ns)...)
	if _, err := conn.Write(resp); err != nil {
		return 0, fmt.Errorf("write server proof: %w", err)
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, proof); err != nil {
		return 0, fmt.Errorf("read client proof: %w", err)
	}
	if !hmac.Equal(proof, handshakeMAC(key, "refrouter-cluster-client", kind, nc, ns)) {
		return 0, ErrUnauthenticated
	}
	return kind, conn.SetDeadline(time.Time{})
}

// mux accepts connections on the cluster port, authenticates them and hands
// them to raft (through raftStream) or to a handler by kind. Close stops the
// accept loop, closes every connection it handed to a handler and waits.
type mux struct {
	ln       net.Listener
	key      []byte
	log      *slog.Logger
	handlers map[byte]func(net.Conn) // run on their own goroutine; must return when conn is closed
	raftCh   chan net.Conn

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

func newMux(ln net.Listener, key []byte, log *slog.Logger) *mux {
	return &mux{
		ln:       ln,
		key:      key,
		log:      log,
		handlers: make(map[byte]func(net.Conn)),
		raftCh:   make(chan net.Conn),
		conns:    make(map[net.Conn]struct{}),
		done:     make(chan struct{}),
	}
}

func (m *mux) start() {
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.log.Warn("cluster accept", "err", err)
			select {
			case <-m.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !m.track(conn) {
			conn.Close()
			return
		}
		m.wg.Add(1)
		go m.serve(conn)
	}
}

func (m *mux) serve(conn net.Conn) {
	defer m.wg.Done()
	kind, err := serverHandshake(conn, m.key)
	if err != nil {
		m.log.Warn("cluster connection rejected", "remote", conn.RemoteAddr().String(), "err", err)
		m.untrack(conn)
		conn.Close()
		return
	}
	if kind == kindRaft {
		// Raft owns the connection from here; it is still closed by Close.
		select {
		case m.raftCh <- &trackedConn{Conn: conn, m: m}:
		case <-m.done:
			m.untrack(conn)
			conn.Close()
		}
		return
	}
	h := m.handlers[kind]
	if h == nil {
		m.untrack(conn)
		conn.Close()
		return
	}
	h(conn)
	m.untrack(conn)
	conn.Close()
}

// close stops accepting, closes all connections and waits for handlers.
func (m *mux) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.done)
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	m.ln.Close()
	m.wg.Wait()
}

// raftStream is the raft.StreamLayer over the multiplexed cluster port.
type raftStream struct {
	m         *mux
	d         dialer
	advertise net.Addr
	closeOnce sync.Once
	closed    chan struct{}
}

var _ raft.StreamLayer = (*raftStream)(nil)

// Accept returns the next authenticated raft connection.
func (s *raftStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftCh:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; the listener itself belongs to the mux.
func (s *raftStream) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Addr is the advertised cluster address.
func (s *raftStream) Addr() net.Addr { return s.advertise }

// Dial opens an authenticated raft connection.
func (s *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.d.dial(string(address), kindRaft, timeout)
	if err != nil {
		return nil, err
	}
	if !s.m.track(c) {
		c.Close()
		return nil, net.ErrClosed
	}
	return &trackedConn{Conn: c, m: s.m}, nil
}

// trackedConn forgets itself in the mux when raft closes it.
type trackedConn struct {
	net.Conn
	m *mux
}

// Close closes the connection and stops tracking it.
func (t *trackedConn) Close() error {
	t.m.untrack(t.Conn)
	return t.Conn.Close()
}
