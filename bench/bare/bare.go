// Package bare holds the comparison floors of the redirect benchmark:
// servers that answer every request with the same 302, doing no
// verification, geo lookup or recording — one on fasthttp (Serve), one on
// refrouter's own redirect server, edgehttp (ServeEdge), so that the cost of
// the redirect's work shows apart from the cost of the HTTP engine. The
// answer has the shape and size of refrouter's own 302 (its headers, a
// current Date, a Location carrying a click-token-sized query), since on
// loopback the size of the answer moves a server's CPU per request by a few
// percent.
package bare

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/refrouter/refrouter/edgehttp"
	"github.com/valyala/fasthttp"
)

// Location is the fixed redirect target of every answer: a destination with
// an rr_click query as long as a version 2 click token's.
const Location = "https://live.example.com/room/42?rr_click=" +
	"AiAABAAAAAZgsYNPwxjqU0ClRZL7GOpTQOYnbcAHYmVuY2gtMfdRfUOaybLn0SXV61-Y5Is"

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
		Match: func([]byte) bool { return true },
		Serve: func(dst []byte, r *edgehttp.Request) []byte {
			dst = append(dst, edgeHead...)
			dst = append(dst, r.Date...)
			return append(dst, edgeTail...)
		},
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
		DisableHeaderNamesNormalizing: true,
	}
}

// The answer's headers besides Server, Date and Content-Length, as refrouter
// sends them.
const (
	servedBy     = "bench-1"
	region       = "eu-central"
	cacheControl = "no-store"
)

var (
	location = []byte(Location)
	// edgeHead and edgeTail are ServeEdge's answer around its Date value.
	edgeHead = []byte("HTTP/1.1 302 Found\r\nServer: bare\r\nX-Served-By: " + servedBy +
		"\r\nX-Region: " + region + "\r\nDate: ")
	edgeTail = []byte("\r\nContent-Length: 0\r\nCache-Control: " + cacheControl +
		"\r\nLocation: " + Location + "\r\n\r\n")
)

func handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("X-Served-By", servedBy)
	h.Set("X-Region", region)
	h.Set("Cache-Control", cacheControl)
	h.SetBytesV("Location", location)
	ctx.SetStatusCode(fasthttp.StatusFound)
}
