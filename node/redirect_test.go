package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/cluster"
	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
	"github.com/valyala/fasthttp"
)

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newTestNode starts a single-node cluster with a campaign "bench" whose
// rules are given (nil: none), and returns it with a share code.
func newTestNode(tb testing.TB, withGeo bool, rules string) (*Node, string) {
	tb.Helper()
	return newTestNodeWith(tb, withGeo, rules, nil)
}

// newTestNodeWith is newTestNode with the config edited before the node starts.
func newTestNodeWith(tb testing.TB, withGeo bool, rules string, edit func(*config.Config)) (*Node, string) {
	tb.Helper()
	dir := tb.TempDir()
	cfg := config.Default()
	cfg.Name, cfg.Region, cfg.Lat, cfg.Lon = "t-1", "eu-central", 50.11, 8.68
	cfg.Listen, cfg.Gossip, cfg.Cluster = freeAddr(tb), freeAddr(tb), freeAddr(tb)
	cfg.Profile, cfg.BootstrapExpect, cfg.DataDir = "local", 1, dir
	cfg.Tokens = []config.Token{{Token: "admin-token-0123456789", Role: config.RoleAdmin}}
	cfg.Secrets = []config.Secret{{Gen: 1, Key: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))}}
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	if withGeo {
		p := dir + "/geo.mmdb"
		if err := geotest.BuildDemo(p); err != nil {
			tb.Fatal(err)
		}
		cfg.GeoIP = []string{p}
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	if err := n.WaitReady(ctx); err != nil {
		tb.Fatal(err)
	}
	body := `{"id":"bench","destination":"https://live.example.com/room/42","allowed_hosts":["live.example.com"],
	  "starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z","budget":{"value":1000},
	  "invitee_reward":{"value":1},"inviter_rewards":[{"from":1,"value":1}],"attribution_window":"168h"`
	if rules != "" {
		body += `,"rules":` + rules
	}
	c, err := ledger.ParseCampaign([]byte(body + "}"))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := n.applyAndWait(ctx, ledger.EncodePutCampaign(c)); err != nil {
		tb.Fatal(err)
	}
	res, err := n.applyAndWait(ctx, ledger.EncodeIssueLink(ledger.IssueLink{Campaign: "bench", Inviter: "alice"}))
	if err != nil {
		tb.Fatal(err)
	}
	l, err := ledger.DecodeIssueLinkResult(res)
	if err != nil {
		tb.Fatal(err)
	}
	num := n.ledger.Campaigns().ByID("bench").Number
	code, err := n.keys.Load().AppendCode(nil, links.Code{Campaign: num, Inviter: l.InviterNumber})
	if err != nil {
		tb.Fatal(err)
	}
	return n, string(code)
}

func redirectCtx(code, xff string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("/" + code)
	req.Header.SetUserAgent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	return &ctx
}

func TestRedirectHandler(t *testing.T) {
	n, code := newTestNode(t, true, "")
	ctx := redirectCtx(code, "203.0.113.10")
	n.handle(ctx)
	if ctx.Response.StatusCode() != 302 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	loc := string(ctx.Response.Header.Peek("Location"))
	tok, ok := strings.CutPrefix(loc, "https://live.example.com/room/42?rr_click=")
	if !ok {
		t.Fatalf("Location %q", loc)
	}
	click, err := n.keys.Load().VerifyClick([]byte(tok), time.Now())
	if err != nil || click.Node != "t-1" {
		t.Fatalf("click token %q: %+v %v", tok, click, err)
	}
	// The click reaches the outbox with the country of the forwarded address.
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := n.outbox.Read(0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 && recs[len(recs)-1].Event.Country == "DE" && recs[len(recs)-1].Event.Inviter == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("click not recorded with country DE and inviter alice: %+v", recs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedirectRules(t *testing.T) {
	rules := `[{"when":{"country":["DE"]},"destination":"https://live.example.com/de"},
	  {"when":{"os":["android"]},"destination":"https://live.example.com/android"}]`
	n, code := newTestNode(t, true, rules)
	tests := []struct{ name, xff, ua, want string }{
		{"germany", "203.0.113.10", "Mozilla/5.0 (iPhone)", "https://live.example.com/de?"},
		{"android elsewhere", "198.51.100.10", "Mozilla/5.0 (Linux; Android 14; Pixel 7) Mobile", "https://live.example.com/android?"},
		{"fallback", "198.51.100.10", "Mozilla/5.0 (iPhone)", "https://live.example.com/room/42?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := redirectCtx(code, tt.xff)
			ctx.Request.Header.SetUserAgent(tt.ua)
			n.handle(ctx)
			if loc := string(ctx.Response.Header.Peek("Location")); !strings.HasPrefix(loc, tt.want) {
				t.Fatalf("Location %q, want prefix %q", loc, tt.want)
			}
		})
	}
}

func BenchmarkRedirect(b *testing.B) {
	for _, bc := range []struct {
		name  string
		geo   bool
		rules string
	}{
		{"plain", false, ""},
		{"geo", true, ""},
		{"geo+rules", true, `[{"when":{"country":["DE"]},"destination":"https://live.example.com/de"}]`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n, code := newTestNode(b, bc.geo, bc.rules)
			ctx := redirectCtx(code, "198.51.100.10")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx.Response.Reset()
				n.handle(ctx)
				if i&1023 == 0 {
					// keep the recorder from dropping: the hand-off queue drains concurrently
					for n.clicks.len() > clickQueueCap/2 {
						time.Sleep(time.Millisecond)
					}
				}
			}
			if ctx.Response.StatusCode() != 302 {
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		})
	}
}

// TestRedirectFragment: the click token goes into the destination's query,
// before its fragment, which browsers never send to the server.
func TestRedirectFragment(t *testing.T) {
	rules := `[{"when":{"country":["DE"]},"destination":"https://live.example.com/de#live"},
	  {"when":{"os":["android"]},"destination":"https://live.example.com/x?a=1#f?g=2"}]`
	n, code := newTestNode(t, true, rules)
	tests := []struct{ name, xff, ua, prefix, suffix string }{
		{"no query", "203.0.113.10", "Mozilla/5.0 (iPhone)", "https://live.example.com/de?rr_click=", "#live"},
		{"query and a '?' in the fragment", "198.51.100.10", "Mozilla/5.0 (Linux; Android 14; Pixel 7) Mobile", "https://live.example.com/x?a=1&rr_click=", "#f?g=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := redirectCtx(code, tt.xff)
			ctx.Request.Header.SetUserAgent(tt.ua)
			n.handle(ctx)
			loc := string(ctx.Response.Header.Peek("Location"))
			tok, ok := strings.CutPrefix(loc, tt.prefix)
			if ok {
				tok, ok = strings.CutSuffix(tok, tt.suffix)
			}
			if !ok {
				t.Fatalf("Location %q, want %q<token>%q", loc, tt.prefix, tt.suffix)
			}
			if _, err := n.keys.Load().VerifyClick([]byte(tok), time.Now()); err != nil {
				t.Fatalf("token %q: %v", tok, err)
			}
		})
	}
}

// TestRedirectSplitSpreadsNewViewers: viewers without the A/B cookie are
// spread over a split's arms by weight, and the cookie then keeps each
// viewer's arm.
func TestRedirectSplitSpreadsNewViewers(t *testing.T) {
	rules := `[{"split":[{"destination":"https://live.example.com/a","weight":50},{"destination":"https://live.example.com/b","weight":50}]}]`
	n, code := newTestNode(t, false, rules)
	counts := map[string]int{}
	cookies := map[string]string{}
	for range 200 {
		ctx := redirectCtx(code, "")
		n.handle(ctx)
		loc := string(ctx.Response.Header.Peek("Location"))
		arm, _, _ := strings.Cut(strings.TrimPrefix(loc, "https://live.example.com/"), "?")
		counts[arm]++
		cookie := string(ctx.Response.Header.Peek("Set-Cookie"))
		if cookie == "" {
			t.Fatalf("no Set-Cookie for arm %q", arm)
		}
		cookies[arm], _, _ = strings.Cut(cookie, ";")
	}
	// 200 fair coin flips: each arm 100 ± 7 (one standard deviation).
	if counts["a"] < 60 || counts["b"] < 60 || counts["a"]+counts["b"] != 200 {
		t.Fatalf("arms %v, want both near 100", counts)
	}
	for arm, cookie := range cookies {
		for range 20 {
			ctx := redirectCtx(code, "")
			ctx.Request.Header.Set("Cookie", cookie)
			n.handle(ctx)
			if loc := string(ctx.Response.Header.Peek("Location")); !strings.HasPrefix(loc, "https://live.example.com/"+arm+"?") {
				t.Fatalf("cookie %q: Location %q, want arm %s", cookie, loc, arm)
			}
		}
	}
}

// TestRedirectRepeatedForwardedFor: a trusted proxy that adds its own
// X-Forwarded-For line is believed, not the client's line before it.
func TestRedirectRepeatedForwardedFor(t *testing.T) {
	rules := `[{"when":{"country":["DE"]},"destination":"https://live.example.com/de"}]`
	n, code := newTestNode(t, true, rules)
	for _, tt := range []struct{ name, first, second, want string }{
		{"proxy line says Germany", "198.51.100.10", "203.0.113.10", "https://live.example.com/de?"},
		{"client line says Germany", "203.0.113.10", "198.51.100.10", "https://live.example.com/room/42?"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := redirectCtx(code, tt.first)
			ctx.Request.Header.Add("X-Forwarded-For", tt.second)
			n.handle(ctx)
			if loc := string(ctx.Response.Header.Peek("Location")); !strings.HasPrefix(loc, tt.want) {
				t.Fatalf("Location %q, want prefix %q", loc, tt.want)
			}
		})
	}
}

// TestForwardedIgnoredByDefault: the node reads the header named by
// trusted_proxy_header (X-Forwarded-For by default), so a Forwarded header,
// which a proxy appending X-Forwarded-For leaves to the client, is not believed.
func TestForwardedIgnoredByDefault(t *testing.T) {
	rules := `[{"when":{"country":["DE"]},"destination":"https://live.example.com/de"}]`
	n, code := newTestNode(t, true, rules)
	ctx := redirectCtx(code, "")
	ctx.Request.Header.Set("Forwarded", "for=203.0.113.10")
	n.handle(ctx)
	if loc := string(ctx.Response.Header.Peek("Location")); !strings.HasPrefix(loc, "https://live.example.com/room/42?") {
		t.Fatalf("Location %q: a client's Forwarded header was believed", loc)
	}
}

// TestMissingGeoIPSkipped: a configured GeoIP file that is not there (an
// optional volume left empty) leaves the node serving without geolocation.
func TestMissingGeoIPSkipped(t *testing.T) {
	n, code := newTestNodeWith(t, false, "", func(c *config.Config) { c.GeoIP = []string{"/nonexistent/GeoLite2-City.mmdb"} })
	if n.geo != nil {
		t.Fatal("a GeoIP database was opened")
	}
	ctx := redirectCtx(code, "203.0.113.10")
	n.handle(ctx)
	if ctx.Response.StatusCode() != 302 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
}

// TestQRCode: a share link's QR code is a PNG, rendered once and then served
// from the cache; a forged code gets the not-found page.
func TestQRCode(t *testing.T) {
	n, code := newTestNode(t, false, "")
	get := func(c string) *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.SetRequestURI("/" + c + "/qr.png")
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
		n.handle(&ctx)
		return &ctx
	}
	first := get(code)
	if first.Response.StatusCode() != 200 || string(first.Response.Header.ContentType()) != "image/png" ||
		!bytes.HasPrefix(first.Response.Body(), []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("qr: %d %q", first.Response.StatusCode(), first.Response.Header.ContentType())
	}
	if !n.qrCache.Contains(code) {
		t.Fatal("the rendered image is not cached")
	}
	if again := get(code); !bytes.Equal(again.Response.Body(), first.Response.Body()) {
		t.Fatal("the cached image differs")
	}
	forged := []byte(code)
	forged[3] ^= 1
	if forged[3] < '0' {
		forged[3] = 'z'
	}
	if ctx := get(string(forged)); ctx.Response.StatusCode() != 404 || n.qrCache.Contains(string(forged)) {
		t.Fatalf("forged code: %d", ctx.Response.StatusCode())
	}
}

// TestNearerNodeURLCheck: the check farTarget applies before writing a
// nearer node's URL into a Location header.
func TestNearerNodeURLCheck(t *testing.T) {
	for s, want := range map[string]bool{
		"https://fra-1.example.com:8443":          true,
		"https://evil.example\r\nSet-Cookie: x=1": false,
		"https://a b": false, "https://é.example": false,
	} {
		if got := cluster.CheckPublicURL(s) == nil; got != want {
			t.Errorf("CheckPublicURL(%q) passes: %v", s, got)
		}
	}
}
