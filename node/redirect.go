package node

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/refrouter/refrouter/bots"
	"github.com/refrouter/refrouter/clientip"
	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/links"
	"github.com/valyala/fasthttp"
)

// isCodePath reports whether path is "/" followed by exactly one share code.
func isCodePath(path []byte) bool {
	return len(path) > 0 && path[0] == '/' && links.IsCodeShaped(path[1:])
}

// clickRec is what the redirect hands to the click recorder: fixed size and
// free of pointers into the request, so nothing of the RequestCtx outlives the
// handler and the hand-off does not allocate.
type clickRec struct {
	code    links.Code
	clickID uint64
	at      int64 // unix nanoseconds
	ip      netip.Addr
	country [2]byte
	codeStr [links.CodeLen]byte
	uaLen   uint8
	ua      [160]byte
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Header names in canonical form, set with SetCanonical so that fasthttp
// does not normalise them on every redirect.
var (
	hdrLocation     = []byte("Location")
	hdrCacheControl = []byte("Cache-Control")
	valNoStore      = []byte("no-store")
	hdrHop          = []byte("rr_hop")
)

// redirect is the hot path: verify the code, resolve the campaign from the
// local replica, choose the destination, append a signed click token, answer
// 302 and hand the click to the recorder without waiting (I5: no network, no
// disk, no lock shared with the ledger's writer on this path).
func (n *Node) redirect(ctx *fasthttp.RequestCtx, code []byte) {
	now := n.now()
	sample := n.clickID.Load()&63 == 0
	c, err := n.keys.Verify(code, now)
	if err != nil {
		n.linkNotFound(ctx)
		return
	}
	camp := n.ledger.Campaigns().ByNumber(c.Campaign)
	if camp == nil && !n.ready.Load() {
		// A genuine code this restarting replica does not know yet.
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("starting, retry in a moment\n")
		return
	}
	if camp == nil || now.Before(camp.StartsAt) || !now.Before(camp.EndsAt) {
		n.linkNotFound(ctx)
		return
	}
	ip := n.clientIP(ctx)
	pt := n.locate(ip)
	if target, far := n.farTarget(ctx, &pt); far {
		n.redirectFar(ctx, target, code)
		return
	}
	dest := camp.Destination
	var sticky string
	if rs := n.compiledRules(camp); rs != nil {
		if d, s, ok := n.matchRules(ctx, rs, ip, &pt, now, c.Campaign); ok {
			dest, sticky = d, s
		}
	}
	id := n.clickID.Add(1)
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], dest...)
	if strings.IndexByte(dest, '?') >= 0 {
		b = append(b, '&')
	} else {
		b = append(b, '?')
	}
	b = append(b, "rr_click="...)
	b, err = n.keys.AppendClickToken(b, links.Click{Code: c, ClickID: id, At: now, Node: n.cfg.Name})
	if err != nil {
		// Only a keyring without the code's generation can fail here, and
		// Verify just accepted it: answer as for an unknown code.
		bufPool.Put(bp)
		n.linkNotFound(ctx)
		return
	}
	ctx.Response.Header.SetCanonical(hdrLocation, b)
	*bp = b
	bufPool.Put(bp)
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	if sticky != "" {
		setStickyCookie(ctx, c.Campaign, sticky)
	}
	ctx.SetStatusCode(fasthttp.StatusFound)

	ua := ctx.Request.Header.UserAgent()
	if ctx.IsHead() || bots.IsBot(ua) {
		n.metrics.redirBot.Inc()
		return
	}
	rec := clickRec{code: c, clickID: id, at: now.UnixNano(), ip: ip, country: pt.Country}
	copy(rec.codeStr[:], code)
	rec.uaLen = uint8(copy(rec.ua[:], ua))
	n.metrics.redirCounted.Inc()
	select {
	case n.clicks <- rec:
	default:
		n.metrics.clicksDropped.Inc()
	}
	if sample {
		n.metrics.redirectTime.Observe(time.Since(now).Seconds())
	}
}

// redirectFar sends the client to a nearer node, marking the hop so that the
// other node serves it (loop protection).
func (n *Node) redirectFar(ctx *fasthttp.RequestCtx, base string, code []byte) {
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], base...)
	b = append(b, '/')
	b = append(b, code...)
	b = append(b, "?rr_hop=1"...)
	ctx.Response.Header.SetCanonical(hdrLocation, b)
	*bp = b
	bufPool.Put(bp)
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	ctx.SetStatusCode(fasthttp.StatusFound)
	n.metrics.redirFar.Inc()
}

// locate looks ip up in the GeoIP database (a zero Point when there is none
// or the address is unknown). It does not allocate.
func (n *Node) locate(ip netip.Addr) geo.Point {
	var pt geo.Point
	if n.geo != nil && ip.IsValid() {
		n.geo.LookupPoint(ip, &pt)
	}
	return pt
}

// farTarget reports the URL of the nearer node a client at pt should be sent
// to under the redirect policy (never for a request that was already
// redirected once, nor to a node without a URL).
func (n *Node) farTarget(ctx *fasthttp.RequestCtx, pt *geo.Point) (string, bool) {
	if n.policy.Mode != "redirect" || !pt.OK || !pt.HasCoords || len(ctx.QueryArgs().PeekBytes(hdrHop)) > 0 {
		return "", false
	}
	target, far := n.policy.Decide(n.table, n.cfg.Name, float64(pt.Lat), float64(pt.Lon), true, false)
	if !far || target.URL == "" {
		return "", false
	}
	return target.URL, true
}

// hopQuery is the request's query with rr_hop=1 added (loop protection).
func hopQuery(ctx *fasthttp.RequestCtx) string {
	var a fasthttp.Args
	ctx.QueryArgs().CopyTo(&a)
	a.Set("rr_hop", "1")
	return a.String()
}

// country is the ISO country of pt, or "".
func country(pt *geo.Point) string {
	if !pt.OK || pt.Country[0] == 0 {
		return ""
	}
	return string(pt.Country[:])
}

// clientIP is the connection's address, or the forwarded one when the peer is
// a trusted proxy.
func (n *Node) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	var remote netip.Addr
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		remote, _ = netip.AddrFromSlice(ta.IP)
		remote = remote.Unmap()
	}
	if len(n.trusted) == 0 {
		return remote
	}
	return clientip.From(remote, ctx.Request.Header.Peek("X-Forwarded-For"), ctx.Request.Header.Peek("Forwarded"), n.trusted)
}

var notFoundPage = []byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
	`<title>Link not found</title></head><body style="font-family:sans-serif;text-align:center;padding:3em">` +
	`<h1>This link is not valid</h1><p>The invite link is unknown, has expired, or was mistyped.</p></body></html>`)

// linkNotFound answers an unknown, forged or expired code with a small page.
func (n *Node) linkNotFound(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	ctx.SetBody(notFoundPage)
	n.metrics.redirNotFound.Inc()
}

// trimUA returns the recorded user agent of a click.
func (r *clickRec) userAgent() string {
	ua := r.ua[:r.uaLen]
	if utf8.Valid(ua) {
		return string(ua)
	}
	return string(bytes.ToValidUTF8(ua, nil))
}
