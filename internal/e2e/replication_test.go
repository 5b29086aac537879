package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution/report"
	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/refrouter/refrouter/internal/pgtest"
	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

// clientIPs are addresses of the demo GeoIP database, by country.
var clientIPs = []struct{ ip, country string }{
	{"192.0.2.10", "HK"}, {"203.0.113.5", "DE"}, {"198.51.100.7", "US"},
}

// TestReplicationExactlyOnce drives links, clicks and registrations through a three-node
// cluster that replicates into PostgreSQL (node 0 applies the schema, migrate: true), and
// checks that the database ends up with exactly what the API acknowledged, once each, and
// that the funnel of attribution/report agrees.
func TestReplicationExactlyOnce(t *testing.T) {
	dsn := pgtest.NewDB(t)
	geoFile := filepath.Join(t.TempDir(), "geo.mmdb")
	if err := geotest.BuildDemo(geoFile); err != nil {
		t.Fatal(err)
	}
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) {
		o.DSN = dsn
		o.GeoIP = []string{geoFile}
	})
	a := clusterAPI(t, lc)
	const camp = "e2e-funnel"
	const perInviterCap = 4
	a.createCampaign(2, campaignBody(camp, perInviterCap))

	// Links: inviter i on node i%3; issuing again elsewhere returns the same code.
	inviters := []string{"ann", "bob", "cai", "dee", "eve"}
	codes := make([]string, len(inviters))
	for i, inv := range inviters {
		codes[i] = a.link(i%3, camp, inv)
	}
	if again := a.link(2, camp, "ann"); again != codes[0] {
		t.Fatalf("re-issued link %s, first %s", again, codes[0])
	}
	a.waitInviters(camp, len(inviters)) // see TestClickRightAfterLinkElsewhere

	// Clicks: inviter i gets i+2 clicks, spread over the nodes and countries.
	type clickKey struct{ node, inviter, country string }
	wantClicks := map[clickKey]int{}
	tokens := make([][]string, len(inviters))
	totalClicks := 0
	for i, inv := range inviters {
		for k := 0; k < i+2; k++ {
			n := (i + k) % 3
			cip := clientIPs[(i+2*k)%len(clientIPs)]
			tokens[i] = append(tokens[i], a.click(n, codes[i], cip.ip))
			wantClicks[clickKey{a.names[n], inv, cip.country}]++
			totalClicks++
		}
	}
	// Not counted: a known bot and a HEAD request (both still redirected).
	testutil.Expect(t, a.c.Do(t, "GET", a.urls[0]+"/"+codes[0], "", nil, "User-Agent", "Mozilla/5.0 (compatible; Googlebot/2.1)"), 302, "bot click")
	testutil.Expect(t, a.c.Do(t, "HEAD", a.urls[1]+"/"+codes[1], "", nil, "User-Agent", mobileUA), 302, "HEAD click")

	// Registrations: inviter i brings i+1 invitees through its click tokens, on varying
	// nodes, half waiting for the decision; eve's fifth is over the per-inviter cap.
	acks := map[string]*acked{}
	for i, inv := range inviters {
		for j := 0; j < i+1; j++ {
			n := (i + j + 1) % 3
			invitee := fmt.Sprintf("%s-friend-%d", inv, j)
			cip := clientIPs[(i+j)%len(clientIPs)]
			query := ""
			if j%2 == 0 {
				query = "?wait=5s"
			}
			id, _ := a.register(n, map[string]string{"campaign": camp, "click": tokens[i][j%len(tokens[i])],
				"invitee": invitee, "device": "dev-" + invitee}, query, "X-Forwarded-For", cip.ip)
			if acks[id] != nil {
				t.Fatalf("registration id %s given twice", id)
			}
			acks[id] = &acked{ID: id, Node: a.names[n], Region: a.regions[n], Campaign: camp, Inviter: inv, Invitee: invitee, Country: cip.country}
		}
	}
	for id, ack := range acks {
		ack.Decision = a.decision(0, id)
		if ack.Decision.Inviter != ack.Inviter || ack.Decision.Invitee != ack.Invitee {
			t.Fatalf("decision %+v for %+v", ack.Decision, *ack)
		}
	}
	// Replays answer the same id and add nothing: on the same node and on another one.
	for id, ack := range acks {
		n := indexOf(a.names, ack.Node)
		for _, m := range []int{n, (n + 1) % 3} {
			got, st := a.register(m, map[string]string{"campaign": camp, "code": codes[indexOf(inviters, ack.Inviter)], "invitee": ack.Invitee}, "")
			if got != id || st != 200 {
				t.Fatalf("replay of %s on node %d: id %s status %d", ack.Invitee, m, got, st)
			}
		}
		break
	}
	statuses := map[string]int{}
	for _, ack := range acks {
		statuses[ack.Decision.Status]++
	}
	if statuses["rewarded"] != len(acks)-1 || statuses["capped"] != 1 {
		t.Fatalf("decisions %v, want all rewarded but eve's fifth capped", statuses)
	}

	pool := openPool(t, dsn)
	waitReplicated(t, pool, camp, acks, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("clicks", func(t *testing.T) {
		testutil.WaitFor(t, 30*time.Second, "clicks replicated", func() bool {
			var n int
			return pool.QueryRow(ctx, "SELECT count(*) FROM clicks WHERE campaign = $1", camp).Scan(&n) == nil && n >= totalClicks
		})
		var n, ids int
		if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM clicks WHERE campaign = $1", camp).Scan(&n, &ids); err != nil {
			t.Fatal(err)
		}
		if n != totalClicks || ids != totalClicks {
			t.Fatalf("clicks: %d rows, %d ids; want %d (bots and HEAD not counted)", n, ids, totalClicks)
		}
		rows, err := pool.Query(ctx, "SELECT node, inviter, country, ua, count(*) FROM clicks WHERE campaign = $1 GROUP BY 1, 2, 3, 4", camp)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[clickKey]int{}
		for rows.Next() {
			var k clickKey
			var ua string
			var c int
			if err := rows.Scan(&k.node, &k.inviter, &k.country, &ua, &c); err != nil {
				t.Fatal(err)
			}
			if ua != mobileUA {
				t.Errorf("click ua %q", ua)
			}
			got[k] = c
		}
		if fmt.Sprint(got) != fmt.Sprint(wantClicks) {
			t.Fatalf("clicks by (node, inviter, country):\n got %v\nwant %v", got, wantClicks)
		}
	})

	t.Run("links", func(t *testing.T) {
		rows, err := pool.Query(ctx, "SELECT code, inviter FROM links WHERE campaign = $1", camp)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string]string{}
		for rows.Next() {
			var code, inv string
			if err := rows.Scan(&code, &inv); err != nil {
				t.Fatal(err)
			}
			got[code] = inv
		}
		if len(got) != len(inviters) {
			t.Fatalf("links %v, want one per inviter %v", got, inviters)
		}
		for i, c := range codes {
			if got[c] != inviters[i] {
				t.Fatalf("link %s: inviter %q, want %q", c, got[c], inviters[i])
			}
		}
	})

	t.Run("ledger stats agree", func(t *testing.T) {
		st := a.stats(1, camp)
		if int(st["registrations"]) != len(acks) || int(st["rewarded"]) != statuses["rewarded"] || int(st["capped"]) != statuses["capped"] {
			t.Fatalf("ledger stats %v, acknowledged %d registrations %v", st, len(acks), statuses)
		}
	})

	rep, err := report.Funnel(ctx, pool, camp)
	if err != nil {
		t.Fatalf("funnel: %v", err)
	}
	t.Run("funnel total and regions", func(t *testing.T) {
		want := report.Row{Clicks: int64(totalClicks), Registrations: int64(len(acks)), Rewarded: int64(statuses["rewarded"])}
		if rep.Total != want {
			t.Fatalf("funnel total %+v, want %+v", rep.Total, want)
		}
		byRegion := map[string]report.Row{}
		for k, c := range wantClicks {
			r := byRegion[a.regions[indexOf(a.names, k.node)]]
			r.Clicks += int64(c)
			byRegion[a.regions[indexOf(a.names, k.node)]] = r
		}
		for _, ack := range acks {
			r := byRegion[ack.Region]
			r.Registrations++
			if ack.Decision.Status == "rewarded" {
				r.Rewarded++
			}
			byRegion[ack.Region] = r
		}
		if got := rowsByKey(rep.ByRegion); fmt.Sprint(got) != fmt.Sprint(keyed(byRegion)) {
			t.Fatalf("funnel by region:\n got %v\nwant %v", got, keyed(byRegion))
		}
	})
	t.Run("funnel top inviters", func(t *testing.T) {
		want := map[string]report.Inviter{}
		for k, c := range wantClicks {
			w := want[k.inviter]
			w.User = k.inviter
			w.Clicks += int64(c)
			want[k.inviter] = w
		}
		for _, ack := range acks {
			w := want[ack.Inviter]
			w.Registrations++
			if ack.Decision.Status == "rewarded" {
				w.Rewarded++
			}
			for _, g := range ack.Decision.Grants {
				if g.Role == "inviter" {
					w.Value += g.Value
				}
			}
			want[ack.Inviter] = w
		}
		if len(rep.TopInviters) != len(inviters) {
			t.Fatalf("top inviters %+v", rep.TopInviters)
		}
		for i, in := range rep.TopInviters {
			if in != want[in.User] {
				t.Errorf("top inviter %s: %+v, want %+v", in.User, in, want[in.User])
			}
			if i > 0 && rep.TopInviters[i-1].Rewarded < in.Rewarded {
				t.Errorf("top inviters not ordered by rewarded: %+v", rep.TopInviters)
			}
		}
	})
	t.Run("funnel by country", func(t *testing.T) {
		byCountry := map[string]report.Row{}
		for k, c := range wantClicks {
			r := byCountry[k.country]
			r.Clicks += int64(c)
			byCountry[k.country] = r
		}
		for _, ack := range acks {
			r := byCountry[ack.Country]
			r.Registrations++
			if ack.Decision.Status == "rewarded" {
				r.Rewarded++
			}
			byCountry[ack.Country] = r
		}
		if got := rowsByKey(rep.ByCountry); fmt.Sprint(got) != fmt.Sprint(keyed(byCountry)) {
			t.Fatalf("funnel by country (registrations by the client IP's country, like clicks):\n got %v\nwant %v", got, keyed(byCountry))
		}
	})
}

// clusterAPI describes an in-process local cluster for the helpers.
func clusterAPI(t testing.TB, lc *localcluster.Cluster) *api {
	a := &api{t: t, c: testutil.NewClient(), admin: lc.Secrets.AdminToken, platform: lc.Secrets.PlatformToken}
	for _, c := range lc.Configs {
		a.urls = append(a.urls, c.PublicURL)
		a.names = append(a.names, c.Name)
		a.regions = append(a.regions, c.Region)
	}
	return a
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	panic("indexOf: " + v + " not found")
}

type keyedRow struct {
	Key                             string
	Clicks, Registrations, Rewarded int64
}

func keyed(m map[string]report.Row) []keyedRow {
	var out []keyedRow
	for k, r := range m {
		out = append(out, keyedRow{k, r.Clicks, r.Registrations, r.Rewarded})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func rowsByKey(rows []report.Row) []keyedRow {
	m := map[string]report.Row{}
	for _, r := range rows {
		m[r.Key] = r
	}
	return keyed(m)
}

// TestClickRightAfterLinkElsewhere: a link issued on one node and clicked (or registered
// through) at once on another (a share in a chat app opened within the replication lag)
// must still be attributed to its inviter in the clicks and registrations tables.
func TestClickRightAfterLinkElsewhere(t *testing.T) {
	dsn := pgtest.NewDB(t)
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(t, lc)
	const camp = "e2e-fast-click"
	a.createCampaign(0, campaignBody(camp, 100))
	const n = 10
	for i := range n {
		code := a.link(i%3, camp, fmt.Sprintf("fast-%d", i))
		a.click((i+1)%3, code, clientIPs[0].ip)
		a.register((i+2)%3, map[string]string{"campaign": camp, "code": code, "invitee": fmt.Sprintf("fast-friend-%d", i)}, "")
	}
	pool := openPool(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, "clicks and registrations replicated", func() bool {
		var c, r int
		return pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM clicks WHERE campaign = $1), (SELECT count(*) FROM registrations WHERE campaign = $1)",
			camp).Scan(&c, &r) == nil && c >= n && r >= n
	})
	var clicks, regs int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM clicks WHERE campaign = $1 AND inviter = ''), (SELECT count(*) FROM registrations WHERE campaign = $1 AND inviter = '')",
		camp).Scan(&clicks, &regs); err != nil {
		t.Fatal(err)
	}
	if clicks != 0 || regs != 0 {
		t.Fatalf("%d of %d clicks and %d of %d registrations have no inviter", clicks, n, regs, n)
	}
}

// TestHeldThenReleased: a registration held for review (click-to-register too fast) and
// then released by an admin gets a second decision (rewarded, with grants); the database
// and the funnel must show it rewarded.
func TestHeldThenReleased(t *testing.T) {
	dsn := pgtest.NewDB(t)
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(t, lc)
	const camp = "e2e-held"
	body := campaignBody(camp, 100)
	body["fraud"] = map[string]any{"min_click_to_register": "1h"} // every registration after a click is held
	a.createCampaign(0, body)
	code := a.link(0, camp, "hal")
	a.waitInviters(camp, 1)
	tok := a.click(1, code, clientIPs[0].ip)
	id, _ := a.register(1, map[string]string{"campaign": camp, "click": tok, "invitee": "held-friend"}, "?wait=5s")
	if d := a.decision(2, id); d.Status != "held" { // node 2 reviews it below
		t.Fatalf("decision %+v, want held", d)
	}
	r := a.c.Do(t, "POST", a.urls[2]+"/v1/registrations/"+id+"/review", a.admin, map[string]string{"action": "release"})
	testutil.Expect(t, r, 200, "release")
	var rel regView
	r.JSON(t, &rel)
	if rel.Status != "rewarded" || len(rel.Grants) == 0 {
		t.Fatalf("released: %+v", rel)
	}
	pool := openPool(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, "release's grants replicated", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM grants WHERE registration_id = $1", id).Scan(&n) == nil && n == len(rel.Grants)
	})
	testutil.WaitFor(t, 5*time.Second, "a rewarded decision row", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM decisions WHERE registration_id = $1 AND status = 'rewarded'", id).Scan(&n) == nil && n == 1
	})
	// The registration and its click come from node 1's outbox, the
	// release's events from every node's: wait for both.
	testutil.WaitFor(t, 30*time.Second, "the funnel to count the released registration rewarded", func() bool {
		rep, err := report.Funnel(ctx, pool, camp)
		return err == nil && rep.Total.Rewarded == 1 && rep.Total.Registrations == 1
	})
}

// TestSettlementReplicated: a team PK campaign's settlement grants, which no
// registration owns, reach the database, once each although every node
// records them.
func TestSettlementReplicated(t *testing.T) {
	dsn := pgtest.NewDB(t)
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(t, lc)
	const camp = "e2e-pk"
	body := campaignBody(camp, 100)
	// Long enough for the set-up below on a loaded machine: a registration
	// after the end would leave the PK without a winner.
	end := time.Now().Add(10 * time.Second).UTC().Truncate(time.Second)
	body["ends_at"] = end.Format(time.RFC3339)
	body["teams"] = map[string]any{"award": map[string]any{"value": 50}}
	a.createCampaign(0, body)
	codes := map[string]string{}
	for i, inv := range []string{"red-1", "blue-1"} {
		codes[inv] = a.link(i, camp, inv)
	}
	a.waitInviters(camp, 2)
	for i, tm := range map[string]string{"red-1": "red", "blue-1": "blue"} {
		r := a.c.Do(t, "POST", a.urls[0]+"/v1/campaigns/"+camp+"/inviters/"+i+"/team", a.platform, map[string]string{"team": tm})
		testutil.Expect(t, r, 200, "join team")
	}
	id, st := a.register(1, map[string]string{"campaign": camp, "code": codes["blue-1"], "invitee": "pk-friend"}, "?wait=5s")
	if d := a.decision(1, id); st != 200 || d.Status != "rewarded" {
		t.Fatalf("register before the end: status %d, decision %+v", st, d)
	}
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	// Any entry after ends_at settles the campaign.
	a.createCampaign(2, campaignBody("e2e-pk-next", 100))
	pool := openPool(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, "the settlement's team award in the database", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM grants WHERE registration_id = $1", "settlement:"+camp).Scan(&n) == nil && n > 0
	})
	time.Sleep(time.Second) // every node's copy has had time to arrive
	var n int
	var user, role string
	var value int64
	if err := pool.QueryRow(ctx, "SELECT count(*), min(user_id), min(role), min(value) FROM grants WHERE registration_id = $1",
		"settlement:"+camp).Scan(&n, &user, &role, &value); err != nil {
		t.Fatal(err)
	}
	if n != 1 || user != "blue-1" || role != "team" || value != 50 {
		t.Fatalf("settlement grants: %d rows, first %s/%s/%d; want 1 row blue-1/team/50", n, user, role, value)
	}
}
