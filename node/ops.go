package node

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/routing"
	"github.com/valyala/fasthttp"
)

//go:embed dashboard.html
var dashboardHTML []byte

//go:embed openapi.yaml
var openapiYAML []byte

// healthz: the process is up.
func (n *Node) healthz(ctx *fasthttp.RequestCtx) error {
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "ok", "node": n.cfg.Name, "version": n.version})
}

// readyz: joined and the ledger reachable (200), or not yet / degraded (503),
// saying which.
func (n *Node) readyz(ctx *fasthttp.RequestCtx) error {
	leader, ok := n.cluster.Leader()
	body := map[string]any{"node": n.cfg.Name, "region": n.cfg.Region, "leader": leader, "members": len(n.cluster.Members())}
	switch {
	case !n.ready.Load():
		body["status"] = "starting"
		body["reason"] = "waiting for a raft leader and the local replica to catch up"
		return n.writeJSON(ctx, fasthttp.StatusServiceUnavailable, body)
	case !ok:
		// Redirects and acknowledgements still work; decisions wait for a leader.
		body["status"] = "degraded"
		body["reason"] = "no raft leader reachable: redirects and registrations are served, decisions are pending"
		return n.writeJSON(ctx, fasthttp.StatusOK, body)
	}
	body["status"] = "ready"
	return n.writeJSON(ctx, fasthttp.StatusOK, body)
}

func (n *Node) dashboard(ctx *fasthttp.RequestCtx) error {
	ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(dashboardHTML)
	return nil
}

func (n *Node) openapi(ctx *fasthttp.RequestCtx) error {
	ctx.Response.Header.SetContentType("application/yaml")
	ctx.SetBody(openapiYAML)
	return nil
}

// clusterStatus handles GET /v1/cluster (admin).
func (n *Node) clusterStatus(ctx *fasthttp.RequestCtx) error {
	return n.writeJSON(ctx, fasthttp.StatusOK, n.cluster.Status())
}

// ledgerRules handles GET and POST /v1/cluster/ledger-rules (admin): the
// ledger's rules level in force and the newest this build knows; POST
// {"level": N} raises it through the log. Raise it only once every node runs
// a build that knows the level (docs/OPERATIONS.md §6).
func (n *Node) ledgerRules(ctx *fasthttp.RequestCtx) error {
	if ctx.IsPost() {
		var req struct {
			Level int `json:"level"`
		}
		if err := decodeJSON(ctx, &req); err != nil {
			return err
		}
		if req.Level < 1 || req.Level > ledger.RulesLevel {
			return invalid("level %d: this build knows levels 1 to %d", req.Level, ledger.RulesLevel)
		}
		actx, cancel := n.requestContext()
		defer cancel()
		res, err := n.applyAndWait(actx, ledger.EncodeSetRules(uint8(req.Level)))
		if err != nil {
			return unavailable("ledger: %v", err)
		}
		if err := ledger.ResultError(res); err != nil {
			return ledgerError(err)
		}
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]int{"level": int(n.ledger.Rules()), "newest": ledger.RulesLevel})
}

// gossipKey handles POST /v1/cluster/gossip-keys {"action": "install"|"use"|"remove", "key": base64} (admin):
// gossip key rotation without restart, on this node. Rotate by installing the
// new key on every node, then using it on every node, then removing the old one.
func (n *Node) gossipKey(ctx *fasthttp.RequestCtx) error {
	var req struct {
		Action string `json:"action"`
		Key    string `json:"key"`
	}
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(req.Key)
	if err != nil {
		return invalid("key is not base64: %v", err)
	}
	switch len(key) {
	case 16, 24, 32:
	default:
		return invalid("key must be 16, 24 or 32 bytes, not %d", len(key))
	}
	switch req.Action {
	case "install":
		err = n.cluster.InstallKey(key)
	case "use":
		err = n.cluster.UseKey(key)
	case "remove":
		err = n.cluster.RemoveKey(key)
	default:
		return invalid("action must be install, use or remove, not %q", req.Action)
	}
	if err != nil {
		return errf(fasthttp.StatusConflict, codeConflict, "%v", err)
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]any{"ok": true, "node": n.cfg.Name, "action": req.Action})
}

type nearestNode struct {
	Name       string  `json:"name"`
	Region     string  `json:"region"`
	URL        string  `json:"url"`
	DistanceKm float64 `json:"distance_km"`
}

type nearestClient struct {
	IP      string   `json:"ip"`
	Country string   `json:"country,omitempty"`
	Lat     *float64 `json:"lat,omitempty"`
	Lon     *float64 `json:"lon,omitempty"`
}

// nearest handles GET /v1/nearest: the client's location and the healthy
// nodes, nearest first. Admins may ask for another address with ?ip=.
func (n *Node) nearest(ctx *fasthttp.RequestCtx) error {
	ip := n.clientIPCtx(ctx)
	if q := ctx.QueryArgs().Peek("ip"); len(q) > 0 {
		switch role, present := n.role(ctx); {
		case !present:
			return errf(fasthttp.StatusUnauthorized, codeUnauth, "?ip= needs an admin bearer token")
		case role == "":
			return errf(fasthttp.StatusUnauthorized, codeUnauth, "unknown bearer token")
		case role != config.RoleAdmin:
			return errf(fasthttp.StatusForbidden, codeDenied, "?ip= needs an admin token")
		}
		a, err := netip.ParseAddr(string(q))
		if err != nil {
			return invalid("ip %q is not an IP address", q)
		}
		ip = a
	}
	client := nearestClient{IP: ip.String()}
	lat, lon, has := 0.0, 0.0, false
	if n.geo != nil && ip.IsValid() {
		if loc, err := n.geo.Lookup(ip); err == nil {
			client.Country = loc.Country
			if loc.HasCoords {
				lat, lon, has = loc.Lat, loc.Lon, true
				client.Lat, client.Lon = &loc.Lat, &loc.Lon
			}
		}
	}
	var nodes []nearestNode
	if has {
		for _, r := range n.table.Rank(lat, lon) {
			nodes = append(nodes, nearestNode{Name: r.Name, Region: r.Region, URL: r.URL, DistanceKm: round1(r.DistanceKm)})
		}
	} else {
		// Unknown location: this node first, then the others by their distance from it.
		for _, r := range n.table.Rank(n.cfg.Lat, n.cfg.Lon) {
			nodes = append(nodes, nearestNode{Name: r.Name, Region: r.Region, URL: r.URL})
		}
	}
	if nodes == nil {
		nodes = []nearestNode{}
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]any{"client": client, "nodes": nodes})
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// watchMembers feeds cluster membership into the routing table.
func (n *Node) watchMembers(ctx context.Context) {
	ch, cancel := n.cluster.Subscribe()
	defer cancel()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		n.table.Update(n.routingNodes())
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
	}
}

func (n *Node) routingNodes() []routing.Node {
	ms := n.cluster.Members()
	out := make([]routing.Node, 0, len(ms))
	for _, m := range ms {
		if m.Name != n.cfg.Name && m.PublicURL == "" {
			// Not verified over the cluster port (dead, just back, or a
			// stranger): its coordinates are not to be trusted for routing
			// either.
			continue
		}
		out = append(out, routing.Node{
			Name: m.Name, Region: m.Region, URL: m.PublicURL, Lat: m.Lat, Lon: m.Lon, Load: m.Load,
			Suspect: m.State == "suspect", Alive: m.State == "alive" || m.State == "suspect",
		})
	}
	return out
}

// campaignEvents handles GET /v1/campaigns/{id}/events: server-sent events
// with the campaign's live counters, once a second, until the client goes
// away, the node shuts down or an hour has passed (a browser's EventSource
// reconnects by itself; the bound keeps a forgotten stream from living on).
func (n *Node) campaignEvents(ctx *fasthttp.RequestCtx, id string) error {
	if _, ok := n.campaignView(id); !ok {
		return notFound("campaign %q not found", id)
	}
	ctx.Response.Header.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	done := ctx.Done() // closed on server shutdown
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; i < 3600; i++ {
			v, ok := n.campaignView(id)
			if !ok {
				return
			}
			b, _ := json.Marshal(v.Stats)
			if _, err := fmt.Fprintf(w, "event: stats\ndata: %s\n\n", b); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return nil
}
