package node

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/edgehttp"
)

// exchange sends raw requests on one new connection to addr and reads one
// response per request (methods tell HEAD answers apart).
func exchange(t *testing.T, addr string, reqs []string, methods []string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for i, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: methods[i]})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Set("X-Test-Body", string(b))
		out = append(out, resp)
	}
	return out
}

// TestEdgeAnswersLikeFasthttp sends each share-code request twice to a
// running node: once on a fresh connection (the fast path answers it) and
// once after a request that hands the connection to fasthttp (fasthttp
// answers it), and compares the answers.
func TestEdgeAnswersLikeFasthttp(t *testing.T) {
	rules := `[{"when":{"country":["DE"]},"split":[{"destination":"https://live.example.com/a","weight":1},{"destination":"https://live.example.com/b","weight":1}]}]`
	n, code := newTestNode(t, true, rules)
	forged := []byte(code)
	forged[5] ^= 1
	if forged[5] == '0' || forged[5] == 0 {
		forged[5] = 'x'
	}
	const iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"
	cases := []struct{ name, method, target, hdr string }{
		{"click", "GET", "/" + code, "User-Agent: " + iphone + "\r\nX-Forwarded-For: 198.51.100.10\r\n"},
		{"click in DE, split", "GET", "/" + code, "User-Agent: " + iphone + "\r\nX-Forwarded-For: 203.0.113.10\r\n"},
		{"sticky cookie", "GET", "/" + code, "User-Agent: " + iphone + "\r\nX-Forwarded-For: 203.0.113.10\r\nCookie: x=1; rr_ab_1=0.1\r\n"},
		{"head", "HEAD", "/" + code, "User-Agent: " + iphone + "\r\n"},
		{"bot", "GET", "/" + code, "User-Agent: facebookexternalhit/1.1\r\n"},
		{"query kept apart", "GET", "/" + code + "?utm=x&rr_hop=1", "User-Agent: " + iphone + "\r\n"},
		{"forged", "GET", "/" + string(forged), "User-Agent: " + iphone + "\r\n"},
		{"forged head", "HEAD", "/" + string(forged), ""},
		{"close", "GET", "/" + code, "User-Agent: " + iphone + "\r\nConnection: close\r\n"},
	}
	compare := []string{"Cache-Control", "Content-Length", "Set-Cookie", "X-Served-By", "X-Region", "Server", "Retry-After", "X-Test-Body", "Connection"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: x\r\n" + tc.hdr + "\r\n"
			before := n.edge.Stats()
			fast := exchange(t, n.Addr(), []string{req}, []string{tc.method})[0]
			if got := n.edge.Stats().Served - before.Served; got != 1 {
				t.Fatalf("fast path answered %d requests, want 1", got)
			}
			slow := exchange(t, n.Addr(), []string{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", req}, []string{"GET", tc.method})[1]
			if fast.StatusCode != slow.StatusCode {
				t.Fatalf("status: fast %d, fasthttp %d", fast.StatusCode, slow.StatusCode)
			}
			// A viewer without the A/B cookie is placed by the click id, so
			// the two answers may pick different arms: check each on its own.
			newViewer := tc.name == "click in DE, split"
			if newViewer {
				for _, r := range []*http.Response{fast, slow} {
					loc, cookie := r.Header.Get("Location"), r.Header.Get("Set-Cookie")
					arm := strings.TrimPrefix(strings.TrimSuffix(cookie, "; max-age=2592000; HttpOnly; SameSite=Lax"), "rr_ab_1=0.")
					if want := map[string]string{"0": "https://live.example.com/a?", "1": "https://live.example.com/b?"}[arm]; want == "" || !strings.HasPrefix(loc, want) {
						t.Errorf("new viewer: Location %q with Set-Cookie %q", loc, cookie)
					}
				}
			}
			for _, h := range compare {
				if h == "Content-Length" && tc.method == "HEAD" {
					continue // fasthttp leaves it out of a HEAD answer, the fast path sends 0; both are right
				}
				if newViewer && h == "Set-Cookie" {
					continue
				}
				if f, s := fast.Header.Get(h), slow.Header.Get(h); f != s {
					t.Errorf("%s: fast %q, fasthttp %q", h, f, s)
				}
			}
			if fast.StatusCode == 404 && fast.Header.Get("Content-Type") != slow.Header.Get("Content-Type") {
				t.Errorf("Content-Type: fast %q, fasthttp %q", fast.Header.Get("Content-Type"), slow.Header.Get("Content-Type"))
			}
			// Locations differ only in the click token's id and time.
			fl, sl := fast.Header.Get("Location"), slow.Header.Get("Location")
			fp, _, _ := strings.Cut(fl, "rr_click=")
			sp, _, _ := strings.Cut(sl, "rr_click=")
			if fp != sp && !newViewer {
				t.Errorf("Location: fast %q, fasthttp %q", fl, sl)
			}
			if d := fast.Header.Get("Date"); fast.StatusCode != 0 && d == "" {
				t.Errorf("fast path answer without Date")
			} else if _, err := http.ParseTime(d); err != nil {
				t.Errorf("Date %q: %v", d, err)
			}
		})
	}
}

func edgehttpRequest(code string) *edgehttp.Request {
	return &edgehttp.Request{
		Path:          []byte("/" + code),
		Host:          []byte("127.0.0.1"),
		UserAgent:     []byte("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"),
		XForwardedFor: []byte("198.51.100.10"),
		Remote:        netip.MustParseAddrPort("127.0.0.1:5555"),
		Now:           time.Now(),
		Date:          []byte(time.Now().UTC().Format(http.TimeFormat)),
	}
}

func BenchmarkEdgeRedirect(b *testing.B) {
	n, code := newTestNode(b, true, "")
	req := edgehttpRequest(code)
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst = n.serveEdge(dst[:0], req)
		if i++; i&1023 == 0 {
			for n.clicks.len() > clickQueueCap/2 {
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// TestEdgeMalformedGetsJSONError: a share-code request outside the fast
// path's subset that fasthttp cannot parse gets the API's JSON error (I7),
// and the node keeps serving.
func TestEdgeMalformedGetsJSONError(t *testing.T) {
	n, code := newTestNode(t, false, "")
	for _, bad := range []string{
		"GET /" + code + " HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
		"GET /" + code + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n",
	} {
		r := exchange(t, n.Addr(), []string{bad}, []string{"GET"})[0]
		if r.StatusCode != 400 || r.Header.Get("Content-Type") != "application/json" ||
			!strings.Contains(r.Header.Get("X-Test-Body"), `"code":"invalid_argument"`) {
			t.Errorf("%q: %d %s %s", bad, r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("X-Test-Body"))
		}
	}
	ok := exchange(t, n.Addr(), []string{"GET /" + code + " HTTP/1.1\r\nHost: x\r\n\r\n"}, []string{"GET"})[0]
	if ok.StatusCode != 302 {
		t.Fatalf("after bad requests: %d", ok.StatusCode)
	}
}
