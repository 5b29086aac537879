// Package bare holds the comparison floors of the redirect benchmark:
// servers that answer every request with the same 302, doing no
// verification, geo lookup or recording — one on fasthttp (Serve), one on
// refrouter's own redirect server, edgehttp (ServeEdge), so that the cost of
// the redirect's work shows apart from the cost of the HTTP engine.
package bare

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/refrouter/refrouter/edgehttp"
	"github.com/valyala/fasthttp"
)

// Location is the fixed redirect target of every answer.
const Location = "https://live.example.com/room/42"

// Timeouts of the server, so idle benchmark connections do not pile up.
const (
	ReadTimeout = 30 * time.Second
	IdleTimeout = 60 * time.Second
)

// Serve answers every request on ln with "302 Found" and Location until ln
// is closed; it then returns nil. Any other accept error is returned. Serve
// owns its connection goroutines: closing ln stops accepting, and open
// connections end at their next idle or read timeout.
func Serve(ln net.Listener) error {
	if err := newServer().Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve bare 302 on %s: %w", ln.Addr(), err)
	}
	return nil
}

// ServeEdge is Serve on edgehttp: every GET or HEAD in edgehttp's subset of
// HTTP/1.1 gets the 302 straight off the connection (the other requests go to
// Serve's fasthttp handler). It returns nil once ln is closed.
func ServeEdge(ln net.Listener) error {
	es, err := edgehttp.New(edgehttp.Config{
		Match:       func([]byte) bool { return true },
		Serve:       func(dst []byte, _ *edgehttp.Request) []byte { return append(dst, edgeAnswer...) },
		IdleTimeout: IdleTimeout,
		ReadTimeout: ReadTimeout,
	})
	if err != nil {
		return err
	}
	go newServer().Serve(es.Fallback()) // returns when es.Fallback() is closed below
	defer es.Fallback().Close()
	if err := es.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve bare edge 302 on %s: %w", ln.Addr(), err)
	}
	return nil
}

// newServer is the fasthttp server of Serve, and ServeEdge's fallback.
func newServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       handle,
		Name:                          "bare",
		ReadTimeout:                   ReadTimeout,
		IdleTimeout:                   IdleTimeout,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
	}
}

var (
	location   = []byte(Location)
	edgeAnswer = []byte("HTTP/1.1 302 Found\r\nServer: bare\r\nContent-Length: 0\r\nLocation: " + Location + "\r\n\r\n")
)

func handle(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.SetBytesV("Location", location)
}
