package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// DialFunc opens a plain TCP connection to addr, a cluster-port address
// (host:port) as advertised by another node. It must give up when ctx is
// done. Config.Dial uses it for every outgoing connection a Cluster opens
// on the cluster port: the raft transport and the forwarding RPC
// (FetchStatus, which has no Config, dials directly). TLS (if
// Config.TLS is set) and the cluster-key handshake run on top of the
// connection it returns, so a DialFunc only decides how bytes get there: a
// latency-simulating proxy (bench/delay), a SOCKS hop, a test counter.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// dialer opens authenticated connections to other nodes' cluster ports.
type dialer struct {
	key  []byte
	tls  *tls.Config
	hook DialFunc // nil: net.Dialer
}

// dial opens a connection of the given kind to addr: TCP (through the hook
// when set), then TLS when configured, then the cluster-key handshake; all
// within timeout (the handshake keeps its own deadline).
func (d dialer) dial(addr string, kind byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.dialContext(ctx, addr, kind, false)
}

// dialContext is dial within ctx; the cluster-key handshake is bounded by
// ctx as well only when boundHandshake is set.
func (d dialer) dialContext(ctx context.Context, addr string, kind byte, boundHandshake bool) (net.Conn, error) {
	var conn net.Conn
	var err error
	if d.hook != nil {
		conn, err = d.hook(ctx, addr)
		if err == nil && conn == nil {
			err = fmt.Errorf("dial hook returned no connection")
		}
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial cluster %s: %w", addr, err)
	}
	if d.tls != nil {
		cfg := d.tls.Clone()
		if cfg.ServerName == "" {
			if host, _, herr := net.SplitHostPort(addr); herr == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake with cluster %s: %w", addr, err)
		}
		conn = tc
	}
	stop := func() bool { return true }
	if boundHandshake {
		stop = context.AfterFunc(ctx, func() { conn.Close() })
	}
	err = clientHandshake(conn, kind, d.key)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return conn, nil
}
