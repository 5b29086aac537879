// Package testutil holds helpers shared by refrouter's integration tests:
// free ports, bounded polling, a local cluster that cleans up after itself,
// and an HTTP client for the API.
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/refrouter/refrouter/node/localcluster"
)

// FreeBase returns a base port p such that p .. p+span-1 are free on 127.0.0.1.
// It stays below the kernel's ephemeral range (32768-60999), so that a
// restarted node does not find its port taken by some outgoing connection.
func FreeBase(tb testing.TB, span int) int {
	tb.Helper()
	for range 200 {
		base := 20000 + rand.IntN(12000/10)*10
		ok := true
		for p := base; p < base+span && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			pc.Close()
		}
		if ok {
			return base
		}
	}
	tb.Fatal("no free port range found")
	return 0
}

// WaitFor polls cond every 20 ms until it holds or timeout passes, then fails
// the test with msg.
func WaitFor(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s: %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartCluster starts a local cluster of the given sites (DemoSites when nil)
// in tb.TempDir() and shuts it down in tb.Cleanup.
func StartCluster(tb testing.TB, sites []localcluster.Site, edit func(o *localcluster.Options)) *localcluster.Cluster {
	tb.Helper()
	if sites == nil {
		sites = localcluster.DemoSites
	}
	o := localcluster.Options{
		Sites:    sites,
		DataDir:  tb.TempDir(),
		BasePort: FreeBase(tb, 3*len(sites)+1),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if edit != nil {
		edit(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc, err := localcluster.Start(ctx, o)
	if err != nil {
		tb.Fatalf("start local cluster: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lc.Shutdown(ctx); err != nil {
			tb.Logf("shutdown: %v", err)
		}
	})
	return lc
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Client calls the API as a user would, with real HTTP and no redirects followed.
type Client struct {
	HTTP *http.Client
}

// NewClient returns a client that does not follow redirects.
func NewClient() *Client {
	return &Client{HTTP: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %q: %v", r.Body, err)
	}
}

// Do sends one request and fails the test on a transport error. body may be
// nil, a string or []byte (sent as is), or anything else (sent as JSON);
// hdr holds header name, value pairs.
func (c *Client) Do(tb testing.TB, method, url, token string, body any, hdr ...string) *Response {
	tb.Helper()
	r, err := c.Send(context.Background(), method, url, token, body, hdr...)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// Send is Do for code that must not stop the test, such as client
// goroutines: it returns the transport error instead.
func (c *Client) Send(ctx context.Context, method, url, token string, body any, hdr ...string) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Campaign returns a campaign body (API.md shape) with the given id, budget and cap.
func Campaign(id string, budget, cap int) map[string]any {
	return map[string]any{
		"id": id, "destination": "https://live.example.com/room/42", "allowed_hosts": []string{"live.example.com"},
		"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z",
		"budget": map[string]any{"value": budget}, "invitee_reward": map[string]any{"value": 1},
		"inviter_rewards":    []map[string]any{{"from": 1, "to": 3, "value": 1}, {"from": 4, "value": 1}},
		"per_inviter_cap":    cap,
		"attribution_window": "168h", "attribution_model": "last_click",
	}
}

// Expect fails the test unless r has the wanted status.
func Expect(tb testing.TB, r *Response, status int, what string) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
}
