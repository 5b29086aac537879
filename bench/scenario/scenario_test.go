package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refrouter/refrouter/bench/loadgen"
)

func newResp(code int, location string) *fasthttp.Response {
	r := &fasthttp.Response{}
	r.SetStatusCode(code)
	if location != "" {
		r.Header.Set("Location", location)
	}
	return r
}

func TestRedirectBuild(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("81.2.69.1"), netip.MustParseAddr("2001:db8::1")}
	s := Redirect([]string{"AAAA", "BBBB", "CCCC"}, ips)
	if s.Name != NameRedirect {
		t.Errorf("name %q", s.Name)
	}
	seenIP := map[string]bool{}
	for seq := range uint64(6) {
		var req fasthttp.Request
		s.Build(&req, seq)
		want := "/" + []string{"AAAA", "BBBB", "CCCC"}[seq%3]
		if got := string(req.URI().Path()); got != want {
			t.Errorf("seq %d: path %q, want %q", seq, got, want)
		}
		if m := string(req.Header.Method()); m != "GET" {
			t.Errorf("method %q", m)
		}
		if ua := string(req.Header.UserAgent()); !strings.Contains(ua, "Mobile") {
			t.Errorf("user agent %q is not a mobile one", ua)
		}
		xff := string(req.Header.Peek("X-Forwarded-For"))
		if _, err := netip.ParseAddr(xff); err != nil {
			t.Errorf("X-Forwarded-For %q: %v", xff, err)
		}
		seenIP[xff] = true
	}
	if len(seenIP) != 2 {
		t.Errorf("saw clients %v, want both", seenIP)
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name  string
		check loadgen.Check
		resp  *fasthttp.Response
		ok    bool
	}{
		{"redirect 302", checkRedirect, newResp(302, "https://live.example.com/?rr_click=x"), true},
		{"redirect no location", checkRedirect, newResp(302, ""), false},
		{"redirect 404", checkRedirect, newResp(404, ""), false},
		{"ack 202", checkAck, newResp(202, ""), true},
		{"ack 200", checkAck, newResp(200, ""), true},
		{"ack 400", checkAck, newResp(400, ""), false},
		{"decision 200", checkDecision, newResp(200, ""), true},
		{"decision 202", checkDecision, newResp(202, ""), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check(tc.resp)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnexpected) {
				t.Errorf("err %v does not wrap ErrUnexpected", err)
			}
		})
	}
}

type regBody struct {
	Campaign string `json:"campaign"`
	Click    string `json:"click"`
	Code     string `json:"code"`
	Invitee  string `json:"invitee"`
	Device   string `json:"device"`
}

func decodeBody(t *testing.T, b []byte) regBody {
	t.Helper()
	var rb regBody
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rb); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return rb
}

func TestRegisterBuild(t *testing.T) {
	tests := []struct {
		name     string
		cfg      RegisterConfig
		wantName string
		wantURI  string
		field    string
	}{
		{"ack with clicks", RegisterConfig{Campaign: `spring "live"`, Clicks: []string{"tokA", "tokB"}, Token: "pt"},
			NameRegisterAck, "/v1/registrations", "click"},
		{"decision with codes", RegisterConfig{Campaign: "c", Codes: []string{"CODE1"}, Token: "pt", Wait: 2 * time.Second},
			NameRegisterDecision, "/v1/registrations?wait=2s", "code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Register(tc.cfg)
			if s.Name != tc.wantName {
				t.Errorf("name %q, want %q", s.Name, tc.wantName)
			}
			invitees := map[string]bool{}
			for seq := range uint64(4) {
				var req fasthttp.Request
				s.Build(&req, seq)
				if got := string(req.RequestURI()); got != tc.wantURI {
					t.Errorf("uri %q, want %q", got, tc.wantURI)
				}
				if got := string(req.Header.Peek("Authorization")); got != "Bearer pt" {
					t.Errorf("authorization %q", got)
				}
				if got := string(req.Header.Method()); got != "POST" {
					t.Errorf("method %q", got)
				}
				rb := decodeBody(t, req.Body())
				if rb.Campaign != tc.cfg.Campaign {
					t.Errorf("campaign %q", rb.Campaign)
				}
				ref := rb.Click
				refs := tc.cfg.Clicks
				if tc.field == "code" {
					ref, refs = rb.Code, tc.cfg.Codes
				}
				if ref != refs[seq%uint64(len(refs))] {
					t.Errorf("%s = %q", tc.field, ref)
				}
				invitees[rb.Invitee] = true
			}
			if len(invitees) != 4 {
				t.Errorf("invitees %v, want 4 distinct", invitees)
			}
		})
	}
	// Two scenarios without a prefix get distinct invitees.
	var a, b fasthttp.Request
	Register(RegisterConfig{Campaign: "c"}).Build(&a, 0)
	Register(RegisterConfig{Campaign: "c"}).Build(&b, 0)
	if decodeBody(t, a.Body()).Invitee == decodeBody(t, b.Body()).Invitee {
		t.Error("two runs share invitee names")
	}
}

func TestIsRegistration(t *testing.T) {
	for _, conv := range []float64{0, 0.01, 0.1, 0.333, 1} {
		n := 0
		for seq := range uint64(10000) {
			if IsRegistration(seq, conv) {
				n++
			}
		}
		if want := int(10000 * conv); n < want-1 || n > want+1 {
			t.Errorf("conversion %v: %d of 10000, want %d", conv, n, want)
		}
	}
}

func TestFunnelInvalid(t *testing.T) {
	for _, c := range []FunnelConfig{{Codes: []string{"x"}, Conversion: 1.5}, {Conversion: 0.5}} {
		if _, err := Funnel(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("Funnel(%+v) err = %v, want ErrInvalid", c, err)
		}
	}
}

// TestFunnelAgainstServer runs the funnel through the load generator against
// a fake node and checks registrations carry click tokens of earlier clicks.
func TestFunnelAgainstServer(t *testing.T) {
	var (
		mu     sync.Mutex
		clicks int
		regs   []regBody
		bad    []string
	)
	h := func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		defer mu.Unlock()
		if string(ctx.Method()) == "GET" {
			clicks++
			ctx.Redirect("https://live.example.com/room?rr_click=tok-"+string(ctx.Path()[1:]), fasthttp.StatusFound)
			return
		}
		var rb regBody
		if err := json.Unmarshal(ctx.PostBody(), &rb); err != nil {
			bad = append(bad, string(ctx.PostBody()))
		}
		regs = append(regs, rb)
		ctx.SetStatusCode(fasthttp.StatusAccepted)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { _ = srv.Shutdown(); <-done }()

	ips, err := IPsFromCIDRs([]netip.Prefix{netip.MustParsePrefix("81.2.69.0/24")}, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Funnel(FunnelConfig{Codes: []string{"C1", "C2"}, IPs: ips, Conversion: 0.2,
		Register: RegisterConfig{Campaign: "spring", Token: "pt"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := loadgen.Run(context.Background(), loadgen.Options{Rate: 200, Connections: 1,
		Duration: 500 * time.Millisecond, Name: s.Name}, loadgen.Target{URL: "http://" + ln.Addr().String()}, s.Build, s.Check)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.OK != 100 || res.ErrorCount() != 0 {
		t.Errorf("ok=%d errors=%v, want 100 ok", res.OK, res.Errors)
	}
	if clicks != 80 || len(regs) != 20 || len(bad) > 0 {
		t.Fatalf("clicks=%d registrations=%d bad=%q, want 80 and 20", clicks, len(regs), bad)
	}
	withToken := 0
	for _, r := range regs {
		if strings.HasPrefix(r.Click, "tok-C") {
			withToken++
		}
		if r.Campaign != "spring" || r.Invitee == "" {
			t.Errorf("registration %+v", r)
		}
	}
	// With one connection the first click completes before any registration.
	if withToken != len(regs) {
		t.Errorf("%d of %d registrations carry a click token", withToken, len(regs))
	}
}

func TestClickToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://live.example.com/room/42?a=1&rr_click=abc_-", "abc_-"},
		{"myapp://open?rr_click=x%2By", "x+y"},
		{"https://live.example.com/", ""},
		{"%zz", ""},
	}
	for _, tc := range tests {
		if got := ClickToken([]byte(tc.in)); got != tc.want {
			t.Errorf("ClickToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzClickToken(f *testing.F) {
	for _, s := range []string{"https://x/?rr_click=abc", "myapp://open?rr_click=x%2By", "%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = ClickToken([]byte(s)) // must not panic
	})
}
