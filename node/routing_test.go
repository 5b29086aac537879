package node_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

// newGeoEnv starts the demo cluster with the demo GeoIP database and the
// given routing mode on every node.
func newGeoEnv(t *testing.T, mode string) *env {
	dir := t.TempDir()
	db := filepath.Join(dir, "geo.mmdb")
	if err := geotest.BuildDemo(db); err != nil {
		t.Fatal(err)
	}
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) {
		o.GeoIP = []string{db}
		o.Edit = func(_ int, c *config.Config) { c.Routing.Mode = mode }
	})
	e := &env{t: t, lc: lc, c: testutil.NewClient(), admin: lc.Secrets.AdminToken, platform: lc.Secrets.PlatformToken}
	for _, c := range lc.Configs {
		e.urls = append(e.urls, c.PublicURL)
	}
	return e
}

type nearestResp struct {
	Client struct {
		IP, Country string
		Lat, Lon    float64
	}
	Nodes []struct {
		Name       string
		DistanceKm float64 `json:"distance_km"`
	}
}

// TestNearest: viewers around the world get the demo's regions in the right
// order, X-Forwarded-For counts only from trusted proxies, ?ip= only for admins.
func TestNearest(t *testing.T) {
	e := newGeoEnv(t, "local")
	// Wait until every node sees all three members.
	testutil.WaitFor(t, 10*time.Second, "three nodes in /v1/nearest", func() bool {
		var n nearestResp
		e.c.Do(t, "GET", e.urls[0]+"/v1/nearest", "", nil, "X-Forwarded-For", geotest.DemoFrankfurt).JSON(t, &n)
		return len(n.Nodes) == 3
	})
	tests := []struct{ ip, country, first, last string }{
		{geotest.DemoHongKong, "HK", "hk-1", "iad-1"},
		{geotest.DemoShanghai, "CN", "hk-1", "iad-1"},
		{geotest.DemoFrankfurt, "DE", "fra-1", "hk-1"},
		{geotest.DemoLondon, "GB", "fra-1", "hk-1"},
		{geotest.DemoAshburn, "US", "iad-1", "hk-1"},
		{geotest.DemoSaoPaulo, "BR", "iad-1", "hk-1"},
		{geotest.DemoSydney, "AU", "hk-1", "fra-1"},
	}
	for _, tt := range tests {
		t.Run(tt.country, func(t *testing.T) {
			var n nearestResp
			r := e.c.Do(t, "GET", e.urls[1]+"/v1/nearest", "", nil, "X-Forwarded-For", tt.ip)
			testutil.Expect(t, r, 200, "nearest")
			r.JSON(t, &n)
			if n.Client.Country != tt.country || len(n.Nodes) != 3 || n.Nodes[0].Name != tt.first || n.Nodes[2].Name != tt.last {
				t.Fatalf("nearest for %s: %s", tt.ip, r.Body)
			}
			if n.Nodes[0].DistanceKm > n.Nodes[1].DistanceKm {
				t.Fatalf("not ordered by distance: %s", r.Body)
			}
		})
	}
	// ?ip= is for admins only.
	testutil.Expect(t, e.c.Do(t, "GET", e.urls[0]+"/v1/nearest?ip="+geotest.DemoSydney, e.platform, nil), 403, "?ip= as platform")
	var n nearestResp
	r := e.c.Do(t, "GET", e.urls[0]+"/v1/nearest?ip="+geotest.DemoSydney, e.admin, nil)
	testutil.Expect(t, r, 200, "?ip= as admin")
	r.JSON(t, &n)
	if n.Client.Country != "AU" {
		t.Fatalf("?ip=: %s", r.Body)
	}
	// A node that leaves is gone from every node's answer.
	stopped := e.lc.Nodes[2]
	stopCtx, cancel := testContext(10 * time.Second)
	defer cancel()
	if err := stopped.Shutdown(stopCtx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "iad-1 gone from /v1/nearest", func() bool {
		var n nearestResp
		e.c.Do(t, "GET", e.urls[0]+"/v1/nearest", "", nil, "X-Forwarded-For", geotest.DemoAshburn).JSON(t, &n)
		return len(n.Nodes) == 2 && n.Nodes[0].Name != "iad-1" && n.Nodes[1].Name != "iad-1"
	})
}

// TestUntrustedForwardedForIgnored: a node that does not trust the peer uses the connection's address.
func TestUntrustedForwardedForIgnored(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "geo.mmdb")
	if err := geotest.BuildDemo(db); err != nil {
		t.Fatal(err)
	}
	lc := testutil.StartCluster(t, localcluster.DemoSites[:1], func(o *localcluster.Options) {
		o.GeoIP = []string{db}
		o.Edit = func(_ int, c *config.Config) { c.TrustedProxies = []string{"10.0.0.0/8"} }
	})
	var n nearestResp
	r := testutil.NewClient().Do(t, "GET", lc.Configs[0].PublicURL+"/v1/nearest", "", nil, "X-Forwarded-For", geotest.DemoSydney)
	r.JSON(t, &n)
	if n.Client.IP != "127.0.0.1" || n.Client.Country != "" {
		t.Fatalf("spoofed X-Forwarded-For believed: %s", r.Body)
	}
}

// TestRedirectPolicy: with routing mode "redirect", a far viewer's click is
// sent to the nearest node (302) and a far registration too (307), once.
func TestRedirectPolicy(t *testing.T) {
	e := newGeoEnv(t, "redirect")
	spring := testutil.Campaign("far", 1000, 10)
	spring["fraud"] = map[string]any{"min_click_to_register": "-1s"}
	e.createCampaign(0, spring)
	l := e.link(1, "far", "alice")
	testutil.WaitFor(t, 10*time.Second, "fra-1 sees hk-1", func() bool {
		r := e.c.Do(t, "GET", e.urls[1]+"/"+l.Code, "", nil, "X-Forwarded-For", geotest.DemoSydney, "User-Agent", mobileUA)
		return strings.HasPrefix(r.Header.Get("Location"), e.urls[0]+"/")
	})
	r := e.c.Do(t, "GET", e.urls[1]+"/"+l.Code, "", nil, "X-Forwarded-For", geotest.DemoSydney, "User-Agent", mobileUA)
	testutil.Expect(t, r, 302, "far click")
	hop := r.Header.Get("Location")
	if hop != e.urls[0]+"/"+l.Code+"?rr_hop=1" {
		t.Fatalf("far click sent to %q", hop)
	}
	// The hop is served where it lands, even though that node is "far" too.
	r = e.c.Do(t, "GET", hop, "", nil, "X-Forwarded-For", geotest.DemoSydney, "User-Agent", mobileUA)
	testutil.Expect(t, r, 302, "hop")
	if !strings.HasPrefix(r.Header.Get("Location"), "https://live.example.com/room/42?rr_click=") {
		t.Fatalf("hop redirected to %q", r.Header.Get("Location"))
	}
	// A near viewer is served locally.
	r = e.c.Do(t, "GET", e.urls[1]+"/"+l.Code, "", nil, "X-Forwarded-For", geotest.DemoFrankfurt, "User-Agent", mobileUA)
	if !strings.HasPrefix(r.Header.Get("Location"), "https://live.example.com/") {
		t.Fatalf("near click sent to %q", r.Header.Get("Location"))
	}
	// Registrations: 307 to the nearest node, keeping the query.
	r = e.c.Do(t, "POST", e.urls[1]+"/v1/registrations?wait=2s", e.platform,
		map[string]string{"campaign": "far", "code": l.Code, "invitee": "kiwi"}, "X-Forwarded-For", geotest.DemoSydney)
	testutil.Expect(t, r, 307, "far registration")
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, e.urls[0]+"/v1/registrations?") || !strings.Contains(loc, "rr_hop=1") || !strings.Contains(loc, "wait=2s") {
		t.Fatalf("far registration sent to %q", loc)
	}
}
