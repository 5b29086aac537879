package node

import (
	"fmt"
	"strconv"

	"github.com/refrouter/refrouter/edgehttp"
	"github.com/valyala/fasthttp"
)

// newEdge builds the fast path in front of the fasthttp server: share-code
// requests are answered straight off the connection; every other request is
// handed, with its connection, to fasthttp (same timeouts).
func (n *Node) newEdge() (*edgehttp.Server, error) {
	return edgehttp.New(edgehttp.Config{
		Match:       isCodePath,
		Serve:       n.serveEdge,
		IdleTimeout: n.server.IdleTimeout,
		ReadTimeout: n.server.ReadTimeout,
		Panic:       func(v any) { n.log.Error("panic in redirect", "panic", fmt.Sprint(v)) },
	})
}

// edgeHeaders are the header lines every fast-path answer carries besides
// Date: the ones fasthttp's answers carry (Server, X-Served-By, X-Region).
func edgeHeaders(name, region string) []byte {
	return []byte("Server: refrouter\r\nX-Served-By: " + name + "\r\nX-Region: " + region + "\r\n")
}

// serveEdge answers a share-code request on the fast path: the redirect, then
// the whole HTTP response appended to dst.
func (n *Node) serveEdge(dst []byte, r *edgehttp.Request) []byte {
	req := redirectReq{
		code:           r.Path[1:],
		head:           r.Head,
		hop:            queryHop(r.Query),
		now:            r.Now,
		remote:         r.Remote.Addr(),
		ua:             r.UserAgent,
		xff:            r.XForwardedFor,
		forwarded:      r.Forwarded,
		acceptLanguage: r.AcceptLanguage,
		cookie:         r.Cookie,
	}
	if !n.realClock {
		req.now = n.now()
	}
	// Most answers are 302s: write its head up to the Location value and
	// let the redirect append the value in place; start over for the others.
	start := len(dst)
	dst = append(dst, "HTTP/1.1 302 Found\r\n"...)
	dst = n.appendEdgeHeaders(dst, r)
	dst = append(dst, "Content-Length: 0\r\nCache-Control: no-store\r\nLocation: "...)
	res := n.redirect(&req, dst)
	switch res.status {
	case fasthttp.StatusFound:
		// Destinations are URLs checked at campaign creation (no control
		// characters) and the token is base64url: nothing to escape.
		dst = append(res.loc, "\r\n"...)
		if res.sticky != "" {
			dst = append(dst, "Set-Cookie: "...)
			dst = appendStickySetCookie(dst, res.campaign, res.sticky)
			dst = append(dst, "\r\n"...)
		}
		dst = append(dst, "\r\n"...)
	case fasthttp.StatusServiceUnavailable:
		dst = append(dst[:start], "HTTP/1.1 503 Service Unavailable\r\n"...)
		dst = n.appendEdgeHeaders(dst, r)
		dst = append(dst, "Retry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"...)
		dst = appendBody(dst, r.Head, startingBody)
	default:
		dst = append(dst[:start], "HTTP/1.1 404 Not Found\r\n"...)
		dst = n.appendEdgeHeaders(dst, r)
		dst = append(dst, "Cache-Control: no-store\r\nContent-Type: text/html; charset=utf-8\r\n"...)
		dst = appendBody(dst, r.Head, notFoundPage)
	}
	return dst
}

// appendEdgeHeaders appends the headers every fast-path answer carries:
// the node's own, Connection: close when the client asked to close (RFC 9112
// 9.6), and Date.
func (n *Node) appendEdgeHeaders(dst []byte, r *edgehttp.Request) []byte {
	dst = append(dst, n.edgeHeaders...)
	if r.Close {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "Date: "...)
	dst = append(dst, r.Date...)
	return append(dst, "\r\n"...)
}

// appendBody appends Content-Length, the end of the header and, unless the
// request was HEAD, the body.
func appendBody[T string | []byte](dst []byte, head bool, body T) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	if !head {
		dst = append(dst, body...)
	}
	return dst
}

// queryHop reports whether a raw query string carries a non-empty rr_hop,
// read by fasthttp's own query parser, as redirectCtx reads it.
func queryHop(q []byte) bool {
	if len(q) == 0 {
		return false
	}
	a := fasthttp.AcquireArgs()
	a.ParseBytes(q)
	hop := len(a.Peek(hopParam)) > 0
	fasthttp.ReleaseArgs(a)
	return hop
}
