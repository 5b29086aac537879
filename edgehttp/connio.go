package edgehttp

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// connIO reads and writes a served connection. On Linux, for a connection
// that exposes its socket (syscall.Conn), a read or write that can complete
// at once is one raw system call on the socket's descriptor; when the socket
// is not ready, a write waits through the runtime's poller, which honours
// deadlines, and a read returns errNotReady for the caller to wait the same
// way with waitReadable. Elsewhere, and for other connections, it is the
// net.Conn's Read and Write.
//
// Why: net.Conn's Read and Write go through several layers, take the
// descriptor's lock (an atomic read-modify-write each way) and tell the
// scheduler about the system call; on the redirect path, where each request
// is one read and one write, that was about 0.3 µs of the 7 µs a request
// costs a server pinned to a core (measured with perf; docs/BENCHMARKS.md).
type connIO struct {
	c   net.Conn
	raw *rawIO // nil: use c
	// stop, when set and true, fails a write that would have to wait: the
	// server's Shutdown has given up on the connections (see write).
	stop *atomic.Bool
}

func newConnIO(c net.Conn) *connIO {
	return &connIO{c: c, raw: newRawIO(c)}
}

// errNotReady is read's answer for a connection that canWait and has no
// input yet, and the raw write's when the socket cannot take all it has.
var errNotReady = errors.New("edgehttp: no input yet")

// read reads into p; n > 0 or an error (io.EOF at the end of the stream). On
// a connection that canWait it never waits: with no input yet it returns
// errNotReady, and the caller waits with waitReadable, without p.
func (io *connIO) read(p []byte) (int, error) {
	if io.raw == nil {
		return io.c.Read(p)
	}
	return io.raw.read(p)
}

// canWait reports whether the connection can wait for input without a
// buffer to read into (waitReadable).
func (io *connIO) canWait() bool { return io.raw != nil }

// waitReadable waits until the connection has input, has ended or failed,
// or its read deadline passes (an error). Only for a connection that canWait.
func (io *connIO) waitReadable() error { return io.raw.waitReadable() }

// errStopped is write's answer once stop is set.
var errStopped = errors.New("edgehttp: connection abandoned by Shutdown")

// write writes all of p by deadline or returns an error. On the raw path
// the deadline is set only when the socket cannot take p at once, so the
// usual write, which never waits, costs no timer update; through net.Conn,
// whose Write checks the deadline every time, it is set before each write.
//
// A deadline set here could undo the past deadline with which a forced
// Shutdown wakes writers, had it been set just before; so after setting it,
// write checks stop, which Shutdown sets before setting its deadlines: either
// the check sees it, or Shutdown's deadline comes after this one.
func (io *connIO) write(p []byte, deadline time.Time) error {
	if io.raw != nil {
		rest, err := io.raw.write(p)
		if err != errNotReady {
			return err
		}
		p = rest
	}
	if err := io.c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if io.stop != nil && io.stop.Load() {
		return errStopped
	}
	if io.raw != nil {
		return io.raw.waitWrite(p)
	}
	_, err := io.c.Write(p)
	return err
}

// rawConnOf returns c's raw socket, or nil when it has none.
func rawConnOf(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
