package node

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
	"sync"

	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/rules"
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

// appendStickyCookie appends the name of campaign's A/B cookie to dst: the
// cookie that keeps a viewer's A/B split choice per campaign.
func appendStickyCookie(dst []byte, campaign uint16) []byte {
	return strconv.AppendUint(append(dst, "rr_ab_"...), uint64(campaign), 10)
}

// cookieValue returns the value of the first cookie called name in a Cookie
// header ("a=1; b=2"), nil when there is none. Quotes around a value are
// removed, as fasthttp does.
func cookieValue(header, name []byte) []byte {
	for len(header) > 0 {
		var pair []byte
		if i := bytes.IndexByte(header, ';'); i >= 0 {
			pair, header = header[:i], header[i+1:]
		} else {
			pair, header = header, nil
		}
		pair = bytes.TrimSpace(pair)
		k, v, ok := bytes.Cut(pair, []byte{'='})
		if !ok || !bytes.Equal(bytes.TrimSpace(k), name) {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v
	}
	return nil
}

// matchRules matches the campaign's rules against the request. A split rule
// keeps the arm in the viewer's rr_ab cookie; a viewer without one is placed
// by the click id, so new viewers spread over the arms by weight.
func (n *Node) matchRules(r *redirectReq, rs *rules.Set, ip netip.Addr, pt *geo.Point, campaign uint16, clickID uint64) (string, string, bool) {
	var name [16]byte
	var key [8]byte
	req := rules.Request{
		UA:             r.ua,
		AcceptLanguage: r.acceptLanguage,
		IP:             ip,
		Now:            r.now,
		Sticky:         cookieValue(r.cookie, appendStickyCookie(name[:0], campaign)),
	}
	if req.Sticky == nil {
		binary.LittleEndian.PutUint64(key[:], clickID)
		req.Sticky = key[:]
	}
	if pt.OK {
		req.Country = string(pt.Country[:])
		req.Continent = string(pt.Continent[:])
	}
	return rs.Match(&req)
}

// appendStickySetCookie appends the Set-Cookie value that keeps value in
// campaign's A/B cookie for 30 days; both the fast path and fasthttp send it.
func appendStickySetCookie(dst []byte, campaign uint16, value string) []byte {
	dst = appendStickyCookie(dst, campaign)
	dst = append(dst, '=')
	dst = append(dst, value...)
	return append(dst, "; max-age=2592000; HttpOnly; SameSite=Lax"...)
}
