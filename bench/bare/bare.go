// Package bare is the comparison floor of the redirect benchmark: a bare
// fasthttp server that answers every request with the same 302, doing no
// verification, geo lookup or recording.
package bare

import (
	"errors"
	"fmt"
	"net"
	"time"

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
	s := &fasthttp.Server{
		Handler:                       handle,
		Name:                          "bare",
		ReadTimeout:                   ReadTimeout,
		IdleTimeout:                   IdleTimeout,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
	}
	if err := s.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve bare 302 on %s: %w", ln.Addr(), err)
	}
	return nil
}

var location = []byte(Location)

func handle(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusFound)
	ctx.Response.Header.SetBytesV("Location", location)
}
