package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"github.com/refrouter/refrouter/config"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

const mobileUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"

type env struct {
	t        *testing.T
	lc       *localcluster.Cluster
	c        *testutil.Client
	admin    string
	platform string
	urls     []string
}

func newEnv(t *testing.T) *env {
	lc := testutil.StartCluster(t, nil, nil)
	e := &env{t: t, lc: lc, c: testutil.NewClient(), admin: lc.Secrets.AdminToken, platform: lc.Secrets.PlatformToken}
	for _, c := range lc.Configs {
		e.urls = append(e.urls, c.PublicURL)
	}
	return e
}

func (e *env) createCampaign(node int, body map[string]any) {
	e.t.Helper()
	r := e.c.Do(e.t, "POST", e.urls[node]+"/v1/campaigns", e.admin, body)
	testutil.Expect(e.t, r, 201, "create campaign")
}

type linkResp struct{ Code, URL, QR string }

func (e *env) link(node int, campaign, inviter string) linkResp {
	e.t.Helper()
	r := e.c.Do(e.t, "POST", e.urls[node]+"/v1/campaigns/"+campaign+"/links", e.platform, map[string]string{"inviter": inviter})
	testutil.Expect(e.t, r, 201, "issue link")
	var l linkResp
	r.JSON(e.t, &l)
	return l
}

// click follows a share link on the given node and returns the click token.
func (e *env) click(node int, code string) string {
	e.t.Helper()
	r := e.c.Do(e.t, "GET", e.urls[node]+"/"+code, "", nil, "User-Agent", mobileUA)
	testutil.Expect(e.t, r, 302, "click")
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if loc.Host != "live.example.com" || loc.Path != "/room/42" {
		e.t.Fatalf("redirected to %s", loc)
	}
	tok := loc.Query().Get("rr_click")
	if tok == "" {
		e.t.Fatalf("no rr_click in %s", loc)
	}
	return tok
}

type regView struct {
	ID, Status, Reason, Campaign, Inviter, Invitee string
	Grants                                         []struct {
		User, Role string
		Value      int64
	}
}

type stats struct {
	Clicks, Links, Registrations, Rewarded, Duplicates, Capped, Held, Rejected, BudgetSpent, BudgetLeft float64
}

func (e *env) stats(node int, campaign string) stats {
	e.t.Helper()
	r := e.c.Do(e.t, "GET", e.urls[node]+"/v1/campaigns/"+campaign, e.admin, nil)
	testutil.Expect(e.t, r, 200, "get campaign")
	var v struct{ Stats stats }
	r.JSON(e.t, &v)
	return v.Stats
}

// TestSpine drives the whole public path on a real three-node cluster:
// a campaign created on a follower is served by every node, links redirect,
// forged codes do not, registrations are acknowledged, idempotent and decided.
func TestSpine(t *testing.T) {
	e := newEnv(t)
	// Create on the last node (whichever it is, most often a follower).
	spring := testutil.Campaign("spring", 1000, 10)
	spring["fraud"] = map[string]any{"min_click_to_register": "-1s"} // tests register right after the click
	e.createCampaign(2, spring)
	l := e.link(1, "spring", "alice")
	if len(l.Code) > 16 {
		t.Fatalf("code %q longer than 16", l.Code)
	}
	if again := e.link(0, "spring", "alice"); again.Code != l.Code {
		t.Fatalf("same inviter got a new code: %s vs %s", again.Code, l.Code)
	}

	t.Run("every node redirects", func(t *testing.T) {
		for i := range e.urls {
			e.click(i, l.Code)
		}
	})

	t.Run("every single-character change is rejected", func(t *testing.T) {
		const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		for pos := 0; pos < len(l.Code); pos++ {
			for _, ch := range []byte{alphabet[(strings.IndexByte(alphabet, l.Code[pos])+1)%62], alphabet[(strings.IndexByte(alphabet, l.Code[pos])+31)%62]} {
				bad := l.Code[:pos] + string(ch) + l.Code[pos+1:]
				r := e.c.Do(t, "GET", e.urls[0]+"/"+bad, "", nil, "User-Agent", mobileUA)
				if r.Status != 404 {
					t.Fatalf("tampered code %s answered %d", bad, r.Status)
				}
				if !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
					t.Fatalf("404 page is %s", r.Header.Get("Content-Type"))
				}
			}
		}
	})

	t.Run("headers name the node", func(t *testing.T) {
		for i, u := range e.urls {
			r := e.c.Do(t, "GET", u+"/healthz", "", nil)
			if r.Header.Get("X-Served-By") != e.lc.Configs[i].Name || r.Header.Get("X-Region") != e.lc.Configs[i].Region {
				t.Fatalf("node %d headers: %v", i, r.Header)
			}
		}
	})

	t.Run("registration is acknowledged, idempotent and decided", func(t *testing.T) {
		tok := e.click(0, l.Code)
		body := map[string]string{"campaign": "spring", "click": tok, "invitee": "bob", "device": "d-1"}
		r := e.c.Do(t, "POST", e.urls[0]+"/v1/registrations", e.platform, body)
		if r.Status != 202 && r.Status != 200 {
			t.Fatalf("register: %d %s", r.Status, r.Body)
		}
		var first regView
		r.JSON(t, &first)
		r2 := e.c.Do(t, "POST", e.urls[0]+"/v1/registrations?wait=5s", e.platform, body)
		var second regView
		r2.JSON(t, &second)
		if second.ID != first.ID {
			t.Fatalf("idempotency: %s vs %s", second.ID, first.ID)
		}
		var got regView
		testutil.WaitFor(t, 10*time.Second, "decision", func() bool {
			r := e.c.Do(t, "GET", e.urls[0]+"/v1/registrations/"+first.ID, e.platform, nil)
			r.JSON(t, &got)
			return got.Status != "pending"
		})
		if got.Status != "rewarded" || got.Inviter != "alice" || got.Invitee != "bob" || len(got.Grants) != 2 {
			t.Fatalf("decision: %+v", got)
		}
		// Every replica knows the decision.
		for i := range e.urls {
			testutil.WaitFor(t, 5*time.Second, "decision on every node", func() bool {
				r := e.c.Do(t, "GET", e.urls[i]+"/v1/registrations/"+first.ID, e.platform, nil)
				return r.Status == 200 && strings.Contains(string(r.Body), "rewarded")
			})
		}
		// The same invitee through another node: the same id and decision.
		r3 := e.c.Do(t, "POST", e.urls[2]+"/v1/registrations", e.platform, body)
		var third regView
		r3.JSON(t, &third)
		if third.ID != first.ID || third.Status != "rewarded" {
			t.Fatalf("cross-node idempotency: %+v", third)
		}
		var prog struct{ Invites, Rewarded, Value, Tier int }
		pr := e.c.Do(t, "GET", e.urls[1]+"/v1/campaigns/spring/inviters/alice", e.platform, nil)
		testutil.Expect(t, pr, 200, "progress")
		pr.JSON(t, &prog)
		if prog.Invites != 1 || prog.Rewarded != 1 {
			t.Fatalf("progress: %+v", prog)
		}
	})

	t.Run("registering faster than a human is held", func(t *testing.T) {
		fast := testutil.Campaign("fast", 1000, 10)
		e.createCampaign(0, fast)
		fl := e.link(0, "fast", "alice")
		tok := e.click(0, fl.Code)
		r := e.c.Do(t, "POST", e.urls[0]+"/v1/registrations?wait=5s", e.platform,
			map[string]string{"campaign": "fast", "click": tok, "invitee": "speedy"})
		testutil.Expect(t, r, 200, "decision within the wait")
		var v regView
		r.JSON(t, &v)
		if v.Status != "held" {
			t.Fatalf("click-to-register in milliseconds: %+v, want held", v)
		}
		// An admin releases it; the normal rules then reward it.
		rr := e.c.Do(t, "POST", e.urls[1]+"/v1/registrations/"+v.ID+"/review", e.admin, map[string]string{"action": "release"})
		testutil.Expect(t, rr, 200, "release")
		rr.JSON(t, &v)
		if v.Status != "rewarded" || len(v.Grants) != 2 {
			t.Fatalf("released: %+v", v)
		}
		rr = e.c.Do(t, "POST", e.urls[1]+"/v1/registrations/"+v.ID+"/review", e.admin, map[string]string{"action": "reject"})
		testutil.Expect(t, rr, 409, "review of a decided registration")
		rr = e.c.Do(t, "POST", e.urls[1]+"/v1/registrations/"+v.ID+"/review", e.platform, map[string]string{"action": "reject"})
		testutil.Expect(t, rr, 403, "review with a platform token")
	})

	t.Run("self-invite is rejected", func(t *testing.T) {
		tok := e.click(1, l.Code)
		r := e.c.Do(t, "POST", e.urls[1]+"/v1/registrations?wait=5s", e.platform,
			map[string]string{"campaign": "spring", "click": tok, "invitee": "alice"})
		var v regView
		r.JSON(t, &v)
		if r.Status >= 400 {
			return
		}
		if v.Status != "rejected" || v.Reason == "" {
			t.Fatalf("self-invite: %d %s", r.Status, r.Body)
		}
	})

	t.Run("bots and HEAD are redirected but not counted", func(t *testing.T) {
		// A campaign of its own, so that no click of another subtest is still
		// on its way through gossip.
		e.createCampaign(0, testutil.Campaign("bots", 1000, 10))
		bl := e.link(0, "bots", "alice")
		for _, ua := range []string{"facebookexternalhit/1.1", "WhatsApp/2.23", "TelegramBot (like TwitterBot)", "Slackbot-LinkExpanding 1.0", "Discordbot/2.0", ""} {
			r := e.c.Do(t, "GET", e.urls[0]+"/"+bl.Code, "", nil, "User-Agent", ua)
			testutil.Expect(t, r, 302, "bot redirect "+ua)
		}
		r := e.c.Do(t, "HEAD", e.urls[0]+"/"+bl.Code, "", nil, "User-Agent", mobileUA)
		testutil.Expect(t, r, 302, "HEAD redirect")
		e.click(0, bl.Code) // one human click
		// Every node learns node 0's count through gossip (push-pull, a
		// random peer per interval), as one value: the bot requests were
		// answered before the human click, so a wrongly counted one is in
		// that value too.
		for i := range e.urls {
			testutil.WaitFor(t, 15*time.Second, fmt.Sprintf("node %d sees the click", i), func() bool {
				return e.stats(i, "bots").Clicks >= 1
			})
		}
		for i := range e.urls {
			if got := e.stats(i, "bots").Clicks; got != 1 {
				t.Fatalf("node %d counts %v clicks; want 1 (bots and HEAD are not counted)", i, got)
			}
		}
	})
}

// withField returns m with key set to v.
func withField(m map[string]any, key string, v any) map[string]any {
	m[key] = v
	return m
}

// TestAPIErrors checks the documented error for every kind of bad input (I7).
func TestAPIErrors(t *testing.T) {
	e := newEnv(t)
	e.createCampaign(0, testutil.Campaign("errs", 100, 5))
	u := e.urls[0]
	big := `{"campaign":"` + strings.Repeat("x", 70000) + `"}`
	evil := testutil.Campaign("evil", 100, 5)
	evil["destination"] = "https://evil.example.net/x"
	userinfo := testutil.Campaign("evil2", 100, 5)
	userinfo["destination"] = "https://live.example.com@evil.example.net/"
	js := testutil.Campaign("evil3", 100, 5)
	js["destination"] = "javascript:alert(1)"
	badRules := testutil.Campaign("evil4", 100, 5)
	badRules["rules"] = []map[string]any{{"when": map[string]any{"country": []string{"DE"}}, "destination": "https://evil.example.net/"}}
	tests := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "POST", "/v1/campaigns", "", testutil.Campaign("x", 1, 1), 401, "unauthenticated"},
		{"unknown token", "POST", "/v1/campaigns", "nope-nope-nope-nope", testutil.Campaign("x", 1, 1), 401, "unauthenticated"},
		{"wrong role", "POST", "/v1/campaigns", "platform", testutil.Campaign("x", 1, 1), 403, "permission_denied"},
		{"bad JSON", "POST", "/v1/campaigns", "admin", `{"id":`, 400, "invalid_argument"},
		{"unknown field", "POST", "/v1/campaigns", "admin", `{"id":"z","destination":"https://live.example.com/","bogus_field":1}`, 400, "invalid_argument"},
		{"open redirect", "POST", "/v1/campaigns", "admin", evil, 400, "invalid_argument"},
		{"userinfo redirect", "POST", "/v1/campaigns", "admin", userinfo, 400, "invalid_argument"},
		{"javascript redirect", "POST", "/v1/campaigns", "admin", js, 400, "invalid_argument"},
		{"rule redirect", "POST", "/v1/campaigns", "admin", badRules, 400, "invalid_argument"},
		{"empty body", "POST", "/v1/registrations", "platform", "", 400, "invalid_argument"},
		{"garbage click", "POST", "/v1/registrations", "platform", map[string]string{"campaign": "errs", "click": "garbage", "invitee": "carol"}, 400, "invalid_argument"},
		{"no click nor code", "POST", "/v1/registrations", "platform", map[string]string{"campaign": "errs", "invitee": "carol"}, 400, "invalid_argument"},
		{"unknown campaign", "POST", "/v1/registrations", "platform", map[string]string{"campaign": "nope", "code": "0000000000000000", "invitee": "carol"}, 404, "not_found"},
		{"bad wait", "POST", "/v1/registrations?wait=forever", "platform", map[string]string{"campaign": "errs", "code": "0000000000000000", "invitee": "c"}, 400, "invalid_argument"},
		{"unknown registration", "GET", "/v1/registrations/nope", "platform", nil, 404, "not_found"},
		{"unknown campaign get", "GET", "/v1/campaigns/nope", "admin", nil, 404, "not_found"},
		{"link without inviter", "POST", "/v1/campaigns/errs/links", "platform", `{}`, 400, "invalid_argument"},
		{"wrong method", "DELETE", "/v1/registrations", "platform", nil, 405, "invalid_argument"},
		{"post to a share link", "POST", "/0000000000000000", "", nil, 405, "invalid_argument"},
		{"nearest ?ip= without token", "GET", "/v1/nearest?ip=192.0.2.1", "", nil, 401, "unauthenticated"},
		{"nearest ?ip= as platform", "GET", "/v1/nearest?ip=192.0.2.1", "platform", nil, 403, "permission_denied"},
		{"segments of an unknown campaign", "POST", "/v1/campaigns/nope/inviters/alice/segments", "platform", map[string]any{"segments": []string{"vip"}}, 404, "not_found"},
		{"team in a campaign without teams", "POST", "/v1/campaigns/errs/inviters/alice/team", "platform", map[string]string{"team": "red"}, 409, "conflict"},
		{"campaign id with a slash", "POST", "/v1/campaigns", "admin", withField(testutil.Campaign("a/b", 1, 1), "id", "a/b"), 400, "invalid_argument"},
		{"wildcard allowed host", "POST", "/v1/campaigns", "admin", withField(testutil.Campaign("wild", 1, 1), "allowed_hosts", []string{"live.example.com", "*.evil.example.net"}), 400, "invalid_argument"},
		{"tab in invitee", "POST", "/v1/registrations", "platform", map[string]string{"campaign": "errs", "code": "0000000000000000", "invitee": "bob\t"}, 400, "invalid_argument"},
		{"escape in invitee", "POST", "/v1/registrations", "platform", map[string]string{"campaign": "errs", "code": "0000000000000000", "invitee": "bob\x1b[31m"}, 400, "invalid_argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			switch tok {
			case "admin":
				tok = e.admin
			case "platform":
				tok = e.platform
			}
			r := e.c.Do(t, tt.method, u+tt.path, tok, tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %.200s", r.Status, tt.status, r.Body)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			r.JSON(t, &body)
			if tt.code != "" && body.Error.Code != tt.code {
				t.Fatalf("error code %q, want %q (%s)", body.Error.Code, tt.code, r.Body)
			}
			if body.Error.Message == "" {
				t.Fatalf("no error message: %s", r.Body)
			}
		})
	}
	// An oversized body gets 413. The node answers as soon as it has read the
	// headers and closes the connection, so a client still writing the body
	// may see a broken pipe instead of the answer (clients that send
	// "Expect: 100-continue", as curl does for large bodies, always see it):
	// retry until the answer is read.
	t.Run("oversized body", func(t *testing.T) {
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest("POST", u+"/v1/registrations", strings.NewReader(big))
			req.Header.Set("Authorization", "Bearer "+e.platform)
			resp, err := e.c.HTTP.Do(req)
			if err != nil {
				if attempt < 20 {
					continue
				}
				t.Fatalf("no answer to an oversized body in %d attempts: %v", attempt, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || !strings.Contains(string(body), `"error"`) {
				t.Fatalf("oversized body: %d %s", resp.StatusCode, body)
			}
			return
		}
	})
	// A request head over 8 KiB gets 431, on an API route and on a share
	// link alike, and the error does not echo the request back.
	for _, path := range []string{"/healthz", "/0000000000000000"} {
		t.Run("oversized head "+path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", u+path, nil)
			req.Header.Set("X-Filler", strings.Repeat("f", 9000))
			resp, err := e.c.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 431 || !strings.Contains(string(body), `"invalid_argument"`) || strings.Contains(string(body), "fff") {
				t.Fatalf("oversized head: %d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("allow header", func(t *testing.T) {
		r := e.c.Do(t, "DELETE", u+"/v1/campaigns", e.admin, nil)
		if r.Status != 405 || r.Header.Get("Allow") != "GET, POST" {
			t.Fatalf("DELETE /v1/campaigns: %d, Allow %q", r.Status, r.Header.Get("Allow"))
		}
	})
	// Nothing half-written: the rejected campaigns do not exist.
	for _, id := range []string{"evil", "evil2", "evil3", "evil4", "z"} {
		r := e.c.Do(t, "GET", u+"/v1/campaigns/"+id, e.admin, nil)
		testutil.Expect(t, r, 404, "rejected campaign "+id)
	}
}

// TestCampaignWindow: a campaign not started yet or already over does not redirect.
func TestCampaignWindow(t *testing.T) {
	e := newEnv(t)
	past := testutil.Campaign("past", 100, 5)
	past["starts_at"], past["ends_at"] = "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
	future := testutil.Campaign("future", 100, 5)
	future["starts_at"], future["ends_at"] = "2090-01-01T00:00:00Z", "2091-01-01T00:00:00Z"
	for _, c := range []map[string]any{past, future} {
		e.createCampaign(0, c)
		l := e.link(0, c["id"].(string), "alice")
		r := e.c.Do(t, "GET", e.urls[1]+"/"+l.Code, "", nil, "User-Agent", mobileUA)
		testutil.Expect(t, r, 404, "link of campaign "+c["id"].(string))
	}
}

func testContext(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// TestGossipKeyRotation rotates the gossip key on a running cluster through
// the admin API (install everywhere, use everywhere, remove the old one) and
// checks that gossip still carries membership afterwards.
func TestGossipKeyRotation(t *testing.T) {
	e := newEnv(t)
	oldKey := e.lc.Secrets.GossipKey
	newKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	for _, step := range []string{"install", "use"} {
		for _, u := range e.urls {
			r := e.c.Do(t, "POST", u+"/v1/cluster/gossip-keys", e.admin, map[string]string{"action": step, "key": newKey})
			testutil.Expect(t, r, 200, step+" on "+u)
		}
	}
	// The old key is no longer primary anywhere: it can go.
	for _, u := range e.urls {
		testutil.Expect(t, e.c.Do(t, "POST", u+"/v1/cluster/gossip-keys", e.admin, map[string]string{"action": "remove", "key": oldKey}), 200, "remove old")
	}
	// Removing the key in use is refused; bad input is a clear error; platform tokens may not.
	testutil.Expect(t, e.c.Do(t, "POST", e.urls[0]+"/v1/cluster/gossip-keys", e.admin, map[string]string{"action": "remove", "key": newKey}), 409, "remove primary")
	testutil.Expect(t, e.c.Do(t, "POST", e.urls[0]+"/v1/cluster/gossip-keys", e.admin, map[string]string{"action": "rotate", "key": newKey}), 400, "bad action")
	testutil.Expect(t, e.c.Do(t, "POST", e.urls[0]+"/v1/cluster/gossip-keys", e.admin, map[string]string{"action": "use", "key": "c2hvcnQ="}), 400, "short key")
	testutil.Expect(t, e.c.Do(t, "POST", e.urls[0]+"/v1/cluster/gossip-keys", e.platform, map[string]string{"action": "use", "key": newKey}), 403, "platform token")
	// Gossip still works with the new key alone: a node that leaves is seen leaving by the others.
	ctx, cancel := testContext(10 * time.Second)
	defer cancel()
	if err := e.lc.Nodes[2].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the others see the leave", func() bool {
		var n struct{ Nodes []struct{ Name string } }
		e.c.Do(t, "GET", e.urls[0]+"/v1/nearest", "", nil).JSON(t, &n)
		return len(n.Nodes) == 2
	})
}

// TestClusterMutualTLS: with cluster_tls on every node, raft and forwarding
// run over mutual TLS and the cluster works as before.
func TestClusterMutualTLS(t *testing.T) {
	files := testutil.WriteTLS(t, t.TempDir())
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) {
		o.Edit = func(_ int, c *config.Config) {
			c.ClusterTLS = config.TLS{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA}
		}
	})
	e := &env{t: t, lc: lc, c: testutil.NewClient(), admin: lc.Secrets.AdminToken, platform: lc.Secrets.PlatformToken}
	for _, c := range lc.Configs {
		e.urls = append(e.urls, c.PublicURL)
	}
	// Campaigns created on every node: at least two of them forward to the leader.
	for i := range e.urls {
		e.createCampaign(i, testutil.Campaign(fmt.Sprint("tls-", i), 100, 5))
	}
	l := e.link(2, "tls-0", "alice")
	for i := range e.urls {
		e.click(i, l.Code)
	}
	// The cluster port really demands a client certificate from the CA.
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", lc.Configs[0].Cluster, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatalf("a client without a certificate got through: %v", err)
	}
}

// TestRegistrationViewerIP: a backend registering for many viewers passes
// each viewer's address in "ip": the per-IP velocity check counts the
// viewers' addresses, not the backend's one; without it, the caller's
// address counts.
func TestRegistrationViewerIP(t *testing.T) {
	e := newEnv(t)
	camp := testutil.Campaign("by-ip", 1000, 100)
	camp["fraud"] = map[string]any{"min_click_to_register": "-1s", "max_per_ip_per_hour": 2,
		"max_per_device_per_day": -1, "max_per_inviter_per_hour": -1}
	e.createCampaign(0, camp)
	code := e.link(0, "by-ip", "host-1").Code
	register := func(invitee, ip string) string {
		t.Helper()
		body := map[string]string{"campaign": "by-ip", "code": code, "invitee": invitee}
		if ip != "" {
			body["ip"] = ip
		}
		r := e.c.Do(t, "POST", e.urls[1]+"/v1/registrations?wait=5s", e.platform, body)
		testutil.Expect(t, r, 200, "register "+invitee)
		var v struct{ Status, Reason string }
		r.JSON(t, &v)
		return v.Status + "/" + v.Reason
	}
	for i := range 3 {
		if got := register(fmt.Sprint("viewer-", i), fmt.Sprint("198.51.100.", 10+i)); got != "rewarded/" {
			t.Fatalf("viewer %d with its own ip: %s", i, got)
		}
	}
	var got []string
	for i := range 3 {
		got = append(got, register(fmt.Sprint("caller-", i), ""))
	}
	if got[0] != "rewarded/" || got[1] != "rewarded/" || got[2] != "held/velocity_ip" {
		t.Fatalf("three from the caller's own address: %v, want the third held for velocity_ip", got)
	}
	r := e.c.Do(t, "POST", e.urls[1]+"/v1/registrations", e.platform, map[string]string{"campaign": "by-ip", "code": code, "invitee": "x", "ip": "not-an-ip"})
	testutil.Expect(t, r, 400, "a bad ip")
}

// TestCampaignEventsStream: the live counters stream needs the admin role
// (as GET /v1/campaigns/{id} does) and sends server-sent "stats" events.
func TestCampaignEventsStream(t *testing.T) {
	e := newEnv(t)
	e.createCampaign(0, testutil.Campaign("live", 100, 5))
	u := e.urls[0] + "/v1/campaigns/live/events"
	for _, tc := range []struct {
		token  string
		status int
	}{{"", 401}, {e.platform, 403}} {
		if r := e.c.Do(t, "GET", u, tc.token, nil); r.Status != tc.status {
			t.Fatalf("token %q: status %d, want %d", tc.token, r.Status, tc.status)
		}
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("admin: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: stats\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
}

// TestLedgerRulesLevel: a new cluster's first campaign puts the newest
// ledger rules in force on every node; the level is readable and can only be
// raised by an admin, to a level this build knows.
func TestLedgerRulesLevel(t *testing.T) {
	e := newEnv(t)
	u := e.urls[1] + "/v1/cluster/ledger-rules"
	var v struct{ Level, Newest int }
	e.c.Do(t, "GET", u, e.admin, nil).JSON(t, &v)
	if v.Level != 0 || v.Newest < 1 {
		t.Fatalf("before any campaign: %+v", v)
	}
	e.createCampaign(0, testutil.Campaign("first", 100, 5))
	for i := range e.urls {
		testutil.WaitFor(t, 10*time.Second, fmt.Sprint("rules level on node ", i), func() bool {
			var v struct{ Level, Newest int }
			e.c.Do(t, "GET", e.urls[i]+"/v1/cluster/ledger-rules", e.admin, nil).JSON(t, &v)
			return v.Level == v.Newest
		})
	}
	if r := e.c.Do(t, "POST", u, e.admin, map[string]int{"level": v.Newest + 1}); r.Status != 400 {
		t.Fatalf("an unknown level: %d %s", r.Status, r.Body)
	}
	if r := e.c.Do(t, "POST", u, e.platform, map[string]int{"level": 1}); r.Status != 403 {
		t.Fatalf("platform token: %d", r.Status)
	}
	if r := e.c.Do(t, "POST", u, e.admin, map[string]int{"level": 1}); r.Status != 200 {
		t.Fatalf("raising to a level in force: %d %s", r.Status, r.Body)
	}
}
