package node

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/refrouter/refrouter/bots"
	"github.com/refrouter/refrouter/cluster"
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
)

// hopParam is the query parameter that marks a request another node sent
// here (loop protection for the redirect policy).
const hopParam = "rr_hop"

// hopped reports whether a fasthttp request carries a non-empty rr_hop.
func hopped(ctx *fasthttp.RequestCtx) bool { return len(ctx.QueryArgs().Peek(hopParam)) > 0 }

// remoteAddr is the address of a fasthttp request's peer (invalid when the
// connection is not TCP).
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	ta, ok := ctx.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(ta.IP)
	return a.Unmap()
}

// redirectReq is what the redirect reads of a request, from whichever server
// read it (edgehttp on the fast path, fasthttp otherwise). Its slices are
// valid during the call only.
type redirectReq struct {
	code   []byte
	head   bool
	hop    bool // rr_hop is set: another node sent the client here
	now    time.Time
	remote netip.Addr
	// Header values, nil when absent; cookie is the whole Cookie header.
	ua, xff, forwarded, acceptLanguage, cookie []byte
}

// redirectRes is the redirect's answer.
type redirectRes struct {
	status int    // 302, 404 or 503
	loc    []byte // for a 302, the caller's buffer with the Location value appended
	// sticky, when set, is the A/B split value to keep in campaign's cookie.
	sticky   string
	campaign uint16
}

// redirect is the hot path: verify the code, resolve the campaign from the
// local replica, choose the destination, append a signed click token to loc
// for the 302 and hand the click to the recorder without waiting (I5: no
// network, no disk, no lock shared with the ledger's writer on this path).
func (n *Node) redirect(req *redirectReq, loc []byte) redirectRes {
	now := req.now
	sample := n.clickID.Load()&63 == 0
	v, err := n.keys.Load().VerifyCode(req.code, now)
	c := v.Code()
	if err != nil {
		n.metrics.redirNotFound.Inc()
		return redirectRes{status: fasthttp.StatusNotFound}
	}
	camp := n.ledger.Campaigns().ByNumber(c.Campaign)
	if camp == nil && !n.ready.Load() {
		// A genuine code this restarting replica does not know yet.
		return redirectRes{status: fasthttp.StatusServiceUnavailable}
	}
	if camp == nil || now.Before(camp.StartsAt) || !now.Before(camp.EndsAt) {
		n.metrics.redirNotFound.Inc()
		return redirectRes{status: fasthttp.StatusNotFound}
	}
	ip := n.clientIP(req.remote, req.xff, req.forwarded)
	pt := n.locate(ip)
	if target, far := n.farTarget(req.hop, &pt); far {
		loc = append(loc, target...)
		loc = append(loc, '/')
		loc = append(loc, req.code...)
		loc = append(loc, "?rr_hop=1"...)
		n.metrics.redirFar.Inc()
		return redirectRes{status: fasthttp.StatusFound, loc: loc}
	}
	res := redirectRes{status: fasthttp.StatusFound, campaign: c.Campaign}
	id := n.clickID.Add(1)
	dest := camp.Destination
	if rs := n.compiledRules(camp); rs != nil {
		if d, s, ok := n.matchRules(req, rs, ip, &pt, c.Campaign, id); ok {
			dest, res.sticky = d, s
		}
	}
	// The click token goes into the query, before any fragment: a browser
	// never sends the fragment, so a token after '#' would not reach the
	// landing page's server.
	base, frag := dest, ""
	if i := strings.IndexByte(dest, '#'); i >= 0 {
		base, frag = dest[:i], dest[i:]
	}
	loc = append(loc, base...)
	if strings.IndexByte(base, '?') >= 0 {
		loc = append(loc, '&')
	} else {
		loc = append(loc, '?')
	}
	loc = append(loc, "rr_click="...)
	loc, err = n.keys.Load().AppendClickTokenFor(loc, v, links.Click{Code: c, ClickID: id, At: now, Node: n.cfg.Name})
	if err != nil {
		// Only a keyring without the code's generation can fail here, and
		// Verify just accepted it: answer as for an unknown code.
		n.metrics.redirNotFound.Inc()
		return redirectRes{status: fasthttp.StatusNotFound}
	}
	res.loc = append(loc, frag...)

	if req.head || bots.IsBot(req.ua) {
		n.metrics.redirBot.Inc()
		return res
	}
	rec := clickRec{code: c, clickID: id, at: now.UnixNano(), ip: ip, country: pt.Country}
	copy(rec.codeStr[:], req.code)
	rec.uaLen = uint8(copy(rec.ua[:], req.ua))
	n.metrics.redirCounted.Inc()
	if !n.clicks.push(&rec) {
		n.metrics.clicksDropped.Inc()
	}
	if sample {
		n.metrics.redirectTime.Observe(time.Since(now).Seconds())
	}
	return res
}

// redirectCtx answers a share-code request that reached fasthttp (the fast
// path hands a connection over at its first request outside the fast
// subset, and later requests on it come here).
func (n *Node) redirectCtx(ctx *fasthttp.RequestCtx, code []byte) {
	h := &ctx.Request.Header
	req := redirectReq{
		code:           code,
		head:           ctx.IsHead(),
		hop:            hopped(ctx),
		now:            n.now(),
		remote:         remoteAddr(ctx),
		ua:             h.UserAgent(),
		xff:            headerValues(h, "X-Forwarded-For"),
		forwarded:      headerValues(h, "Forwarded"),
		acceptLanguage: h.Peek("Accept-Language"),
		cookie:         h.Peek("Cookie"),
	}
	bp := bufPool.Get().(*[]byte)
	res := n.redirect(&req, (*bp)[:0])
	switch res.status {
	case fasthttp.StatusFound:
		ctx.Response.Header.SetCanonical(hdrLocation, res.loc)
		ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
		if res.sticky != "" {
			ctx.Response.Header.AddBytesV("Set-Cookie", appendStickySetCookie(nil, res.campaign, res.sticky))
		}
		ctx.SetStatusCode(fasthttp.StatusFound)
	case fasthttp.StatusServiceUnavailable:
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(startingBody)
	default:
		notFoundPageCtx(ctx) // counted by redirect
	}
	if res.loc != nil {
		*bp = res.loc
	}
	bufPool.Put(bp)
}

// startingBody answers a genuine code while the replica is still starting.
const startingBody = "starting, retry in a moment\n"

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
func (n *Node) farTarget(hop bool, pt *geo.Point) (string, bool) {
	if n.policy.Mode != "redirect" || !pt.OK || !pt.HasCoords || hop {
		return "", false
	}
	target, far := n.policy.Decide(n.table, n.cfg.Name, float64(pt.Lat), float64(pt.Lon), true, false)
	// The cluster lists only URLs that pass this check; checking again
	// where one is written into a Location header keeps a bad one from ever
	// splitting an answer.
	if !far || target.URL == "" || cluster.CheckPublicURL(target.URL) != nil {
		return "", false
	}
	return target.URL, true
}

// hopQuery is the request's query with rr_hop=1 added (loop protection).
func hopQuery(ctx *fasthttp.RequestCtx) string {
	var a fasthttp.Args
	ctx.QueryArgs().CopyTo(&a)
	a.Set(hopParam, "1")
	return a.String()
}

// country is the ISO country of pt, or "".
func country(pt *geo.Point) string {
	if !pt.OK || pt.Country[0] == 0 {
		return ""
	}
	return string(pt.Country[:])
}

// clientIP is the connection's address, or the forwarded one (from the
// X-Forwarded-For and Forwarded header values) when the peer is a trusted proxy.
func (n *Node) clientIP(remote netip.Addr, xff, forwarded []byte) netip.Addr {
	if len(n.trusted) == 0 {
		return remote
	}
	return n.proxies.From(remote, xff, forwarded)
}

// clientIPCtx is clientIP for a fasthttp request.
func (n *Node) clientIPCtx(ctx *fasthttp.RequestCtx) netip.Addr {
	h := &ctx.Request.Header
	return n.clientIP(remoteAddr(ctx), headerValues(h, "X-Forwarded-For"), headerValues(h, "Forwarded"))
}

// headerValues returns every value of the named request header, in order,
// joined with ", " (RFC 9110 5.3): a proxy may add its own header line rather
// than extend the client's, and the right-most values are the ones a trusted
// proxy wrote. It allocates only when the header is repeated.
func headerValues(h *fasthttp.RequestHeader, name string) []byte {
	vals := h.PeekAll(name)
	switch len(vals) {
	case 0:
		return nil
	case 1:
		return vals[0]
	}
	return bytes.Join(vals, []byte(", "))
}

var notFoundPage = []byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
	`<title>Link not found</title></head><body style="font-family:sans-serif;text-align:center;padding:3em">` +
	`<h1>This link is not valid</h1><p>The invite link is unknown, has expired, or was mistyped.</p></body></html>`)

// linkNotFound answers an unknown, forged or expired code with a small page.
func (n *Node) linkNotFound(ctx *fasthttp.RequestCtx) {
	notFoundPageCtx(ctx)
	n.metrics.redirNotFound.Inc()
}

// notFoundPageCtx writes the not-found page without counting it.
func notFoundPageCtx(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.SetCanonical(hdrCacheControl, valNoStore)
	ctx.SetBody(notFoundPage)
}
