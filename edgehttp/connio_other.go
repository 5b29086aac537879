//go:build !linux

package edgehttp

import "net"

// rawIO is connIO's direct path, which exists on Linux only.
type rawIO struct{}

func newRawIO(net.Conn) *rawIO { return nil }

func (*rawIO) read([]byte) (int, error) { panic("edgehttp: no raw I/O on this system") }

func (*rawIO) write([]byte) ([]byte, error) { panic("edgehttp: no raw I/O on this system") }

func (*rawIO) waitWrite([]byte) error { panic("edgehttp: no raw I/O on this system") }

func (*rawIO) waitReadable() error { panic("edgehttp: no raw I/O on this system") }
