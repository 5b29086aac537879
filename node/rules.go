package node

import (
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/rules"
	"github.com/valyala/fasthttp"
)

// ruleCache holds the compiled rules of campaigns, keyed by campaign number
// and invalidated by version. It is copied on write (campaign changes are
// rare) and read without locks on the redirect path.
type ruleCache struct {
	mu   sync.Mutex // serialises writers only
	sets map[uint16]compiledRules
}

type compiledRules struct {
	version uint64
	set     *rules.Set // nil: the campaign has no rules
}

// compiledRules returns the campaign's compiled rule set, or nil when it has none.
func (n *Node) compiledRules(c *ledger.Campaign) *rules.Set {
	if len(c.Rules) == 0 || string(c.Rules) == "null" {
		return nil
	}
	rc := n.rules.Load()
	if cr, ok := rc.sets[c.Number]; ok && cr.version == c.Version {
		return cr.set
	}
	set, err := rules.Parse(c.Rules, c.AllowedHosts)
	if err != nil {
		// Validated at creation; a set that no longer parses falls back to the destination.
		n.log.Warn("campaign rules do not compile", "campaign", c.ID, "err", err)
		set = nil
	}
	rc.mu.Lock()
	next := &ruleCache{sets: make(map[uint16]compiledRules, len(rc.sets)+1)}
	for k, v := range rc.sets {
		next.sets[k] = v
	}
	next.sets[c.Number] = compiledRules{version: c.Version, set: set}
	n.rules.Store(next)
	rc.mu.Unlock()
	return set
}

// stickyCookie names the cookie that keeps a viewer's A/B split choice per campaign.
func stickyCookie(campaign uint16) string { return "rr_ab_" + strconv.Itoa(int(campaign)) }

func (n *Node) matchRules(ctx *fasthttp.RequestCtx, rs *rules.Set, ip netip.Addr, pt *geo.Point, now time.Time, campaign uint16) (string, string, bool) {
	req := rules.Request{
		UA:             ctx.Request.Header.UserAgent(),
		AcceptLanguage: ctx.Request.Header.Peek("Accept-Language"),
		IP:             ip,
		Now:            now,
		Sticky:         ctx.Request.Header.Cookie(stickyCookie(campaign)),
	}
	if pt.OK {
		req.Country = string(pt.Country[:])
		req.Continent = string(pt.Continent[:])
	}
	return rs.Match(&req)
}

func setStickyCookie(ctx *fasthttp.RequestCtx, campaign uint16, value string) {
	var c fasthttp.Cookie
	c.SetKey(stickyCookie(campaign))
	c.SetValue(value)
	c.SetMaxAge(30 * 24 * 3600)
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(&c)
}
