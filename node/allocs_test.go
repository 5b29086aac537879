//go:build !race

package node

import (
	"strings"
	"testing"
	"time"
)

// TestRedirectAllocs locks in the redirect path's allocation budget: verify,
// campaign lookup, geo, click token, Location header and the click hand-off.
func TestRedirectAllocs(t *testing.T) {
	n, code := newTestNode(t, true, "")
	ctx := redirectCtx(code, "198.51.100.10")
	n.handle(ctx) // warm the pools and the key cache
	allocs := testing.AllocsPerRun(1000, func() {
		ctx.Response.Reset()
		n.handle(ctx)
		for n.clicks.len() > clickQueueCap/2 {
			time.Sleep(time.Millisecond)
		}
	})
	if ctx.Response.StatusCode() != 302 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if allocs != 0 {
		t.Fatalf("redirect allocates %.1f times per request, want 0", allocs)
	}
}

// TestEdgeRedirectAllocs: the fast path's answer, redirect included,
// allocates nothing.
func TestEdgeRedirectAllocs(t *testing.T) {
	for _, tc := range []struct{ name, rules string }{
		{"no rules", ""},
		{"split, new viewer", `[{"split":[{"destination":"https://live.example.com/a","weight":1},{"destination":"https://live.example.com/b","weight":1}]}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, code := newTestNode(t, true, tc.rules)
			req := edgehttpRequest(code)
			dst := make([]byte, 0, 2048)
			dst = n.serveEdge(dst[:0], req)
			allocs := testing.AllocsPerRun(1000, func() {
				dst = n.serveEdge(dst[:0], req)
				for n.clicks.len() > clickQueueCap/2 {
					time.Sleep(time.Millisecond)
				}
			})
			if !strings.HasPrefix(string(dst), "HTTP/1.1 302 Found\r\n") {
				t.Fatalf("answer %q", dst)
			}
			if allocs != 0 {
				t.Fatalf("fast-path redirect allocates %.1f times per request, want 0", allocs)
			}
		})
	}
}
