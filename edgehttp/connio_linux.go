//go:build linux

package edgehttp

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rawIO is connIO's direct path: the socket's descriptor, read and written
// with raw system calls, and its raw connection for waiting through the
// runtime's poller. Used by the connection's goroutine only.
//
// The descriptor is used without holding a reference to it, which is sound
// because nothing closes a served connection but the goroutine serving it:
// Shutdown wakes connections with a past deadline instead of closing them,
// and Serve's documentation asks the same of its callers. (A close from
// elsewhere could let the number be reused by another socket in between.)
type rawIO struct {
	fd int
	rc syscall.RawConn

	p     []byte        // what writeSome writes
	errno syscall.Errno // the error of writeSome's last call

	waitIn    func(fd uintptr) bool // for RawConn.Read: true once there is input to read
	woken     bool                  // waitIn has waited once
	writeSome func(fd uintptr) bool // the rest of p, for RawConn.Write
}

func newRawIO(c net.Conn) *rawIO {
	rc := rawConnOf(c)
	if rc == nil {
		return nil
	}
	r := &rawIO{fd: -1, rc: rc}
	if err := rc.Control(func(fd uintptr) { r.fd = int(fd) }); err != nil || r.fd < 0 {
		return nil
	}
	r.waitIn = func(fd uintptr) bool {
		if r.woken {
			r.woken = false
			return true // the poller says input came (a read will tell)
		}
		if inputReady(fd) {
			return true
		}
		r.woken = true
		return false
	}
	r.writeSome = func(fd uintptr) bool {
		r.p, r.errno = writeAll(fd, r.p)
		return r.errno != syscall.EAGAIN
	}
	return r
}

// read is one read on the non-blocking socket: it never waits, and returns
// errNotReady when there is no input yet (waitReadable waits for it).
func (r *rawIO) read(p []byte) (int, error) {
	n, errno := sysRead(uintptr(r.fd), p)
	switch {
	case errno == syscall.EAGAIN:
		return 0, errNotReady
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable waits through the poller until the socket has input, has
// ended or failed, or the read deadline passes.
func (r *rawIO) waitReadable() error {
	r.woken = false
	return r.rc.Read(r.waitIn)
}

// write writes p without waiting: all of it (nil), as much as the socket
// takes (errNotReady with the rest, for waitWrite), or an error.
func (r *rawIO) write(p []byte) ([]byte, error) {
	rest, errno := writeAll(uintptr(r.fd), p)
	switch errno {
	case 0:
		return nil, nil
	case syscall.EAGAIN:
		return rest, errNotReady
	}
	return nil, &net.OpError{Op: "write", Net: "tcp", Err: errno}
}

// waitWrite writes p, waiting through the poller for room in the socket's
// buffer as needed; the write deadline applies.
func (r *rawIO) waitWrite(p []byte) error {
	r.p = p
	err := r.rc.Write(r.writeSome)
	r.p = nil
	if err != nil {
		return err
	}
	if r.errno != 0 {
		return &net.OpError{Op: "write", Net: "tcp", Err: r.errno}
	}
	return nil
}

// writeAll writes p until it is all written (returning an empty rest), the
// socket is full (EAGAIN, with the rest unwritten) or an error.
func writeAll(fd uintptr, p []byte) ([]byte, syscall.Errno) {
	for len(p) > 0 {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			p = p[n:]
		case syscall.EINTR:
		default:
			return p, errno
		}
	}
	return p, 0
}

// sysRead is read(2) on a non-blocking socket, retried on EINTR. It is a raw
// system call (the scheduler is not told): it cannot block, and telling the
// scheduler costs more than most of these calls take.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), 0
		case syscall.EINTR:
		default:
			return 0, errno
		}
	}
}

// inputReady reports whether a read on the socket would not return EAGAIN:
// it peeks at one byte without taking it. RawConn.Read calls waitIn first
// right after resetting the poller's readiness, so input that arrived since
// the last read is seen here rather than waited for.
func inputReady(fd uintptr) bool {
	var b byte
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b)), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EINTR {
			return errno != syscall.EAGAIN
		}
	}
}
