package node

import (
	"context"
	"fmt"
	"time"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
	"github.com/refrouter/refrouter/rules"
	"github.com/valyala/fasthttp"
)

// applyTimeout bounds API calls that go through the ledger.
const applyTimeout = 10 * time.Second

// putCampaign handles POST /v1/campaigns (admin): validate everything here
// (answering 400 before raft), then apply through the ledger, which
// replicates the campaign to every node.
func (n *Node) putCampaign(ctx *fasthttp.RequestCtx) error {
	c, err := ledger.ParseCampaign(ctx.PostBody())
	if err != nil {
		return invalid("%v", err)
	}
	if err := c.Validate(); err != nil {
		return invalid("%v", err)
	}
	if err := checkCampaignID(c.ID); err != nil {
		return err
	}
	if err := n.checkDestinations(&c); err != nil {
		return err
	}
	if err := n.ledger.CheckPut(c); err != nil {
		return ledgerError(err) // a replacement the ledger refuses: 409 before raft
	}
	actx, cancel := n.requestContext()
	defer cancel()
	if n.ledger.Campaigns().Len() == 0 && n.ledger.Rules() < ledger.RulesLevel {
		// A new cluster's first campaign: no entry was decided under older
		// rules, so the newest apply from the start. (A cluster upgraded
		// from a build before rules levels raises them by hand, once every
		// node runs this build: POST /v1/cluster/ledger-rules.)
		if _, err := n.applyAndWait(actx, ledger.EncodeSetRules(ledger.RulesLevel)); err != nil {
			return unavailable("ledger: %v", err)
		}
	}
	res, err := n.applyAndWait(actx, ledger.EncodePutCampaign(c))
	if err != nil {
		return unavailable("ledger: %v", err)
	}
	out, err := ledger.DecodePutCampaignResult(res)
	if err != nil {
		return ledgerError(err)
	}
	return n.writeJSON(ctx, fasthttp.StatusCreated, map[string]any{"id": out.ID, "version": out.Version, "number": out.Number})
}

// checkCampaignID accepts the ids a campaign can be addressed by in a URL
// path without escaping: ASCII letters, digits, '-', '_' and '.', not "." or
// "..". (The ledger takes any id up to its length limit; this narrower rule
// applies to ids created through the API.)
func checkCampaignID(id string) error {
	if id == "." || id == ".." {
		return invalid("id %q: not a usable campaign id", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return invalid("id %q: only ASCII letters, digits, '-', '_' and '.' are allowed", id)
		}
	}
	return nil
}

// checkDestinations applies the allow-list to the campaign destination and
// every destination of its rules (I6: never an open redirect).
func (n *Node) checkDestinations(c *ledger.Campaign) error {
	if len(c.AllowedHosts) == 0 {
		return invalid("allowed_hosts: at least one host is required")
	}
	if err := rules.CheckAllowedHosts(c.AllowedHosts); err != nil {
		return invalid("%v", err)
	}
	if err := rules.CheckDestination(c.Destination, c.AllowedHosts); err != nil {
		return invalid("destination: %v", err)
	}
	if len(c.Rules) > 0 && string(c.Rules) != "null" {
		if _, err := rules.Parse(c.Rules, c.AllowedHosts); err != nil {
			return invalid("rules: %v", err)
		}
	}
	return nil
}

// campaignView is a campaign as GET /v1/campaigns/{id} shows it.
type campaignView struct {
	ledger.Campaign
	Stats statsView `json:"stats"`
}

type statsView struct {
	ledger.Stats
	Clicks uint64 `json:"clicks"`
}

func (n *Node) campaignView(id string) (campaignView, bool) {
	c, st, ok := n.ledger.Campaign(id)
	if !ok {
		return campaignView{}, false
	}
	return campaignView{Campaign: c, Stats: statsView{Stats: st, Clicks: n.cluster.Counters().Total(id)}}, true
}

// getCampaign handles GET /v1/campaigns/{id}: the local replica's campaign and
// stats, with the cluster-wide click count from the gossip counters.
func (n *Node) getCampaign(ctx *fasthttp.RequestCtx, id string) error {
	if _, err := n.campaign(id); err != nil {
		return err
	}
	v, ok := n.campaignView(id)
	if !ok {
		return notFound("campaign %q not found", id)
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, v)
}

// listCampaigns handles GET /v1/campaigns (admin): every campaign with stats.
func (n *Node) listCampaigns(ctx *fasthttp.RequestCtx) error {
	out := []campaignView{}
	for _, c := range n.ledger.Campaigns().All() {
		if v, ok := n.campaignView(c.ID); ok {
			out = append(out, v)
		}
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]any{"campaigns": out})
}

// issueLink handles POST /v1/campaigns/{id}/links {"inviter": "u1"}: the same
// inviter always gets the same code; a new inviter gets a number from the
// ledger first.
func (n *Node) issueLink(ctx *fasthttp.RequestCtx, campaign string) error {
	var req struct {
		Inviter string `json:"inviter"`
	}
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	if err := checkID("inviter", req.Inviter, true); err != nil {
		return err
	}
	camp, err := n.campaign(campaign)
	if err != nil {
		return err
	}
	num, variant, ok := n.ledger.Inviter(campaign, req.Inviter)
	status := fasthttp.StatusOK
	if !ok {
		actx, cancel := n.requestContext()
		defer cancel()
		res, err := n.applyAndWait(actx, ledger.EncodeIssueLink(ledger.IssueLink{Campaign: campaign, Inviter: req.Inviter}))
		if err != nil {
			return unavailable("ledger: %v", err)
		}
		out, err := ledger.DecodeIssueLinkResult(res)
		if err != nil {
			return ledgerError(err)
		}
		num, variant = out.InviterNumber, out.Variant
		status = fasthttp.StatusCreated
		if out.New {
			n.recordLink(campaign, req.Inviter, num, variant)
		}
	}
	cb, err := n.keys.Load().AppendCode(nil, links.Code{Campaign: camp.Number, Inviter: num, Variant: variant})
	if err != nil {
		return fmt.Errorf("issue code: %w", err)
	}
	code := string(cb)
	url := n.cfg.PublicURL + "/" + code
	if status == fasthttp.StatusOK {
		status = fasthttp.StatusCreated // API.md: issuing answers 201, new or not
	}
	return n.writeJSON(ctx, status, map[string]string{"code": code, "url": url, "qr": url + "/qr.png"})
}

// recordLink appends the link-issued event (best effort; the ledger holds the truth).
func (n *Node) recordLink(campaign, inviter string, num uint32, variant uint8) {
	camp := n.ledger.Campaigns().ByID(campaign)
	if camp == nil {
		return
	}
	now := n.now().UTC()
	code, err := n.keys.Load().AppendCode(nil, links.Code{Campaign: camp.Number, Inviter: num, Variant: variant})
	if err != nil {
		return
	}
	actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.outbox.Append(actx, false, attribution.Event{
		ID: newID(now), Kind: attribution.KindLink, At: now, Node: n.cfg.Name, Region: n.cfg.Region,
		Campaign: campaign, Code: string(code), Inviter: inviter,
	}); err != nil {
		n.log.Warn("record link", "err", err)
	}
}

// qr handles GET /{code}/qr.png: a QR code of the link's URL.
func (n *Node) qr(ctx *fasthttp.RequestCtx, code string) error {
	if _, err := n.keys.Load().Verify([]byte(code), n.now()); err != nil {
		n.linkNotFound(ctx)
		return nil
	}
	// Rendering costs about a hundred redirects and share codes are public:
	// keep the recent ones (a code's image changes only with public_url).
	png, ok := n.qrCache.Get(code)
	if !ok {
		var err error
		if png, err = links.QRCodePNG(n.cfg.PublicURL+"/"+code, 256); err != nil {
			return err
		}
		n.qrCache.Add(code, png)
	}
	ctx.Response.Header.SetContentType("image/png")
	ctx.Response.Header.Set("Cache-Control", "public, max-age=86400")
	ctx.SetBody(png)
	return nil
}

// inviterProgress handles GET /v1/campaigns/{id}/inviters/{user}.
func (n *Node) inviterProgress(ctx *fasthttp.RequestCtx, campaign, user string) error {
	if _, err := n.campaign(campaign); err != nil {
		return err
	}
	p, _ := n.ledger.Progress(campaign, user)
	return n.writeJSON(ctx, fasthttp.StatusOK, p)
}

// setSegments handles POST /v1/campaigns/{id}/inviters/{user}/segments {"segments": [...]} (platform).
func (n *Node) setSegments(ctx *fasthttp.RequestCtx, campaign, user string) error {
	var req struct {
		Segments []string `json:"segments"`
	}
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	if len(req.Segments) > 32 {
		return invalid("at most 32 segments")
	}
	if err := checkID("user", user, true); err != nil {
		return err
	}
	if _, err := n.campaign(campaign); err != nil {
		return err
	}
	for _, s := range req.Segments {
		if err := checkID("segment", s, true); err != nil {
			return err
		}
	}
	return n.applySimple(ctx, ledger.EncodeSetSegments(ledger.SetSegments{Campaign: campaign, Inviter: user, Segments: req.Segments}))
}

// joinTeam handles POST /v1/campaigns/{id}/inviters/{user}/team {"team": "red"} (platform).
func (n *Node) joinTeam(ctx *fasthttp.RequestCtx, campaign, user string) error {
	var req struct {
		Team string `json:"team"`
	}
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	if err := checkID("team", req.Team, true); err != nil {
		return err
	}
	if err := checkID("user", user, true); err != nil {
		return err
	}
	if _, err := n.campaign(campaign); err != nil {
		return err
	}
	return n.applySimple(ctx, ledger.EncodeJoinTeam(ledger.JoinTeam{Campaign: campaign, Inviter: user, Team: req.Team}))
}

func (n *Node) applySimple(ctx *fasthttp.RequestCtx, cmd []byte) error {
	actx, cancel := n.requestContext()
	defer cancel()
	res, err := n.applyAndWait(actx, cmd)
	if err != nil {
		return unavailable("ledger: %v", err)
	}
	if err := ledger.ResultError(res); err != nil {
		return ledgerError(err)
	}
	return n.writeJSON(ctx, fasthttp.StatusOK, map[string]bool{"ok": true})
}

// campaign returns a campaign from the local replica for an API request. A
// campaign created a moment ago through another node may not have reached
// this replica yet, so a miss costs one read barrier through the log before
// it is a 404; a replica still catching up after a restart answers 503.
func (n *Node) campaign(id string) (*ledger.Campaign, error) {
	if !n.ready.Load() {
		return nil, notReady()
	}
	if c := n.ledger.Campaigns().ByID(id); c != nil {
		return c, nil
	}
	if err := n.readBarrier(); err != nil {
		return nil, err
	}
	if c := n.ledger.Campaigns().ByID(id); c != nil {
		return c, nil
	}
	return nil, notFound("campaign %q not found", id)
}

// readBarrier returns once this replica has applied everything committed
// before the call: a no-op through the log. API reads use it after a local
// miss, so that a write made a moment ago through another node is seen.
func (n *Node) readBarrier() error {
	ctx, cancel := n.requestContext()
	defer cancel()
	if _, err := n.applyAndWait(ctx, ledger.EncodeNoop()); err != nil {
		return unavailable("ledger: %v", err)
	}
	return nil
}

// requestContext bounds a handler's work through the ledger. It is not
// derived from the *fasthttp.RequestCtx: that one's Done reads server state
// that Shutdown writes, which races (fasthttp v1.74).
func (n *Node) requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), applyTimeout)
}
