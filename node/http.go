package node

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/links"
	"github.com/valyala/fasthttp"
)

// maxBody is the largest request body the API accepts (API.md: 413 beyond it).
const maxBody = 64 << 10

// maxHead is the largest request head (request line and headers) the node
// reads, as nginx's large_client_header_buffers; 431 beyond it.
const maxHead = 8 << 10

// parseErrorText is fasthttp's parse error without the request bytes some
// of its messages quote, so an error body never echoes the request back.
func parseErrorText(err error) string {
	msg := err.Error()
	for _, cut := range []string{": buffer size=", ", contents:"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i]
		}
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return strings.ToValidUTF8(msg, "?")
}

// newServer builds the fasthttp server of the node: timeouts always set, the
// body limit of the API, and errors answered in the API's JSON shape.
func (n *Node) newServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       n.handle,
		Name:                          "refrouter",
		ReadTimeout:                   10 * time.Second,
		WriteTimeout:                  10 * time.Second,
		IdleTimeout:                   60 * time.Second,
		MaxRequestBodySize:            maxBody,
		NoDefaultServerHeader:         false,
		DisableHeaderNamesNormalizing: false,
		ReduceMemoryUsage:             false,
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true, // fasthttp's parse errors would quote the request, bearer token included

		Logger:         fasthttpLogger{n},
		ReadBufferSize: maxHead,
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			n.stampHeaders(ctx)
			var small *fasthttp.ErrSmallBuffer
			switch {
			case errors.Is(err, fasthttp.ErrBodyTooLarge) || strings.Contains(err.Error(), "body size exceeds"):
				n.writeError(ctx, errf(fasthttp.StatusRequestEntityTooLarge, codeInvalid, "request body larger than %d bytes", maxBody))
			case errors.As(err, &small):
				n.writeError(ctx, errf(fasthttp.StatusRequestHeaderFieldsTooLarge, codeInvalid, "request head larger than %d bytes", maxHead))
			default:
				n.writeError(ctx, invalid("malformed request: %s", parseErrorText(err)))
			}
		},
	}
}

var (
	hdrServedBy = []byte("X-Served-By")
	hdrRegion   = []byte("X-Region")
)

func (n *Node) stampHeaders(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetCanonical(hdrServedBy, n.nameBytes)
	ctx.Response.Header.SetCanonical(hdrRegion, n.regionBytes)
}

// handle is the node's only fasthttp handler: the redirect fast path first,
// then the API routes. It recovers panics so that one bad request never takes
// the node down (I7).
func (n *Node) handle(ctx *fasthttp.RequestCtx) {
	n.stampHeaders(ctx)
	path := ctx.Path()
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("panic in handler", "path", string(path), "panic", fmt.Sprint(r))
			ctx.Response.Reset()
			n.stampHeaders(ctx)
			n.writeError(ctx, fmt.Errorf("panic: %v", r))
		}
	}()
	if isCodePath(path) {
		if !ctx.IsGet() && !ctx.IsHead() {
			// A share link is followed, never posted to: not a click.
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			n.writeError(ctx, methodNotAllowed("GET, HEAD"))
			return
		}
		n.redirectCtx(ctx, path[1:])
		return
	}
	start := time.Now()
	route, err := n.route(ctx, path)
	if err != nil {
		n.writeError(ctx, err)
	}
	n.metrics.requests.WithLabelValues(route, statusClass(ctx.Response.StatusCode())).Inc()
	n.metrics.apiSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

func statusClass(code int) string {
	switch {
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	}
	return "5xx"
}

// route dispatches API requests. It returns the route name (for metrics) and
// the handler's error, which the caller writes.
func (n *Node) route(ctx *fasthttp.RequestCtx, path []byte) (string, error) {
	p := string(path)
	method := string(ctx.Method())
	seg := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case p == "/healthz":
		return "healthz", n.healthz(ctx)
	case p == "/readyz":
		return "readyz", n.readyz(ctx)
	case p == "/metrics":
		n.metricsHandler(ctx)
		return "metrics", nil
	case p == "/dashboard" || p == "/dashboard/":
		return "dashboard", n.dashboard(ctx)
	case p == "/openapi.yaml":
		return "openapi", n.openapi(ctx)
	case p == "/v1/nearest":
		return "nearest", n.only(ctx, "GET", n.nearest)
	case p == "/v1/cluster":
		return "cluster", n.only(ctx, "GET", n.auth(config.RoleAdmin, n.clusterStatus))
	case p == "/v1/cluster/ledger-rules":
		if method != "GET" && method != "POST" {
			ctx.Response.Header.Set("Allow", "GET, POST")
			return "cluster.rules", methodNotAllowed("GET, POST")
		}
		return "cluster.rules", n.auth(config.RoleAdmin, n.ledgerRules)(ctx)
	case p == "/v1/cluster/gossip-keys":
		return "cluster.keys", n.only(ctx, "POST", n.auth(config.RoleAdmin, n.gossipKey))
	case p == "/v1/campaigns":
		switch method {
		case "POST":
			return "campaigns.put", n.auth(config.RoleAdmin, n.putCampaign)(ctx)
		case "GET":
			return "campaigns.list", n.auth(config.RoleAdmin, n.listCampaigns)(ctx)
		}
		ctx.Response.Header.Set("Allow", "GET, POST")
		return "campaigns", methodNotAllowed("GET, POST")
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "campaigns":
		return "campaigns.get", n.only(ctx, "GET", n.auth(config.RoleAdmin, func(ctx *fasthttp.RequestCtx) error { return n.getCampaign(ctx, seg[2]) }))
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "campaigns" && seg[3] == "links":
		return "links.issue", n.only(ctx, "POST", n.auth(config.RolePlatform, func(ctx *fasthttp.RequestCtx) error { return n.issueLink(ctx, seg[2]) }))
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "campaigns" && seg[3] == "events":
		return "campaigns.events", n.only(ctx, "GET", n.auth(config.RoleAdmin, func(ctx *fasthttp.RequestCtx) error { return n.campaignEvents(ctx, seg[2]) }))
	case len(seg) == 5 && seg[0] == "v1" && seg[1] == "campaigns" && seg[3] == "inviters":
		return "inviters.get", n.only(ctx, "GET", n.authAny(func(ctx *fasthttp.RequestCtx) error { return n.inviterProgress(ctx, seg[2], seg[4]) }))
	case len(seg) == 6 && seg[0] == "v1" && seg[1] == "campaigns" && seg[3] == "inviters" && seg[5] == "segments":
		return "inviters.segments", n.only(ctx, "POST", n.auth(config.RolePlatform, func(ctx *fasthttp.RequestCtx) error { return n.setSegments(ctx, seg[2], seg[4]) }))
	case len(seg) == 6 && seg[0] == "v1" && seg[1] == "campaigns" && seg[3] == "inviters" && seg[5] == "team":
		return "inviters.team", n.only(ctx, "POST", n.auth(config.RolePlatform, func(ctx *fasthttp.RequestCtx) error { return n.joinTeam(ctx, seg[2], seg[4]) }))
	case p == "/v1/registrations":
		return "registrations.post", n.only(ctx, "POST", n.auth(config.RolePlatform, n.register))
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "registrations":
		return "registrations.get", n.only(ctx, "GET", n.authAny(func(ctx *fasthttp.RequestCtx) error { return n.getRegistration(ctx, seg[2]) }))
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "registrations" && seg[3] == "review":
		return "registrations.review", n.only(ctx, "POST", n.auth(config.RoleAdmin, func(ctx *fasthttp.RequestCtx) error { return n.review(ctx, seg[2]) }))
	case len(seg) == 2 && seg[1] == "qr.png" && links.IsCodeShaped(seg[0]):
		return "qr", n.only(ctx, "GET", func(ctx *fasthttp.RequestCtx) error { return n.qr(ctx, seg[0]) })
	case len(seg) == 1 && !strings.HasPrefix(p, "/v1") && seg[0] != "":
		// Anything else at the top level looks like a (bad) share code.
		n.linkNotFound(ctx)
		return "redirect", nil
	}
	return "unknown", notFound("no route for %s %s", method, p)
}

func methodNotAllowed(allow string) error {
	return errf(fasthttp.StatusMethodNotAllowed, codeInvalid, "method not allowed; use %s", allow)
}

// only lets one method through (HEAD rides with GET).
func (n *Node) only(ctx *fasthttp.RequestCtx, method string, h func(*fasthttp.RequestCtx) error) error {
	m := string(ctx.Method())
	if m != method && !(method == "GET" && m == "HEAD") {
		ctx.Response.Header.Set("Allow", method)
		return methodNotAllowed(method)
	}
	return h(ctx)
}

// role returns the role of the request's bearer token, or "" when it has none
// or an unknown one. Tokens are compared in constant time.
func (n *Node) role(ctx *fasthttp.RequestCtx) (string, bool) {
	h := ctx.Request.Header.Peek("Authorization")
	tok, ok := bytes.CutPrefix(h, []byte("Bearer "))
	if !ok || len(tok) == 0 {
		return "", false
	}
	role := ""
	for _, t := range n.tokens {
		if subtle.ConstantTimeCompare(t.token, tok) == 1 {
			role = t.role
		}
	}
	return role, true
}

// auth wraps h so that it runs only for a token of the given role. Admin tokens
// may do what platform tokens may.
func (n *Node) auth(want string, h func(*fasthttp.RequestCtx) error) func(*fasthttp.RequestCtx) error {
	return func(ctx *fasthttp.RequestCtx) error {
		role, present := n.role(ctx)
		switch {
		case !present:
			return errf(fasthttp.StatusUnauthorized, codeUnauth, "missing bearer token")
		case role == "":
			return errf(fasthttp.StatusUnauthorized, codeUnauth, "unknown bearer token")
		case role != want && role != config.RoleAdmin:
			return errf(fasthttp.StatusForbidden, codeDenied, "this route needs the %s role", want)
		}
		return h(ctx)
	}
}

// authAny accepts any known token.
func (n *Node) authAny(h func(*fasthttp.RequestCtx) error) func(*fasthttp.RequestCtx) error {
	return n.auth(config.RolePlatform, h)
}

// decodeJSON decodes the request body strictly: one JSON value, unknown fields rejected.
func decodeJSON(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("request body is empty; a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("bad JSON: trailing data after the object")
	}
	return nil
}

// fasthttpLogger sends fasthttp's own messages (bad requests, closed
// connections) to the node's logger at debug level.
type fasthttpLogger struct{ n *Node }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.n.log.Debug("http: " + fmt.Sprintf(format, args...))
}
