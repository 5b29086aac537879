package cluster

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipTransport is memberlist's NetTransport whose outgoing TCP
// connections (join, push-pull, fallback probes) end when ctx is done: a
// dial in progress is abandoned and an open connection is closed. Shutdown
// cancels ctx first, so it never waits out memberlist's TCPTimeout on a seed
// that does not answer.
type gossipTransport struct {
	*memberlist.NetTransport
	ctx context.Context
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// newGossipTransport binds memberlist's listeners on host:port (port 0 picks
// a free port, retried like memberlist does, since TCP and UDP must get the
// same one).
func newGossipTransport(ctx context.Context, host string, port int, logger *log.Logger) (*gossipTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			return &gossipTransport{NetTransport: nt, ctx: ctx}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("gossip transport on %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
}

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: timeout}).DialContext(t.ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	cc := &ctxConn{Conn: conn}
	cc.stop = context.AfterFunc(t.ctx, func() { conn.Close() })
	return cc, nil
}

// ctxConn is a connection closed when its transport's ctx is done.
type ctxConn struct {
	net.Conn
	once sync.Once
	stop func() bool
}

// Close stops watching the ctx and closes the connection.
func (c *ctxConn) Close() error {
	c.once.Do(func() { c.stop() })
	return c.Conn.Close()
}
