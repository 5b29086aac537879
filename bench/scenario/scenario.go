// Package scenario builds the requests of refrouter's benchmark scenarios
// (redirect, registration, funnel) for bench/loadgen, and spreads of client
// IP addresses to send them from.
//
// A Scenario's Build and Check are called concurrently by the load
// generator's workers; everything here is safe for concurrent use. The
// slices passed to the constructors must not be modified afterwards.
package scenario

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refrouter/refrouter/bench/loadgen"
)

// Scenario names used in results.
const (
	NameRedirect         = "redirect"
	NameRegisterAck      = "register-ack"
	NameRegisterDecision = "register-decision"
	NameFunnel           = "funnel"
)

// Sentinel errors.
var (
	// ErrUnexpected is wrapped by the errors Check functions return.
	ErrUnexpected = errors.New("scenario: unexpected response")
	// ErrInvalid is wrapped by errors about bad configuration or input.
	ErrInvalid = errors.New("scenario: invalid")
)

// Scenario is a named pair of request builder and response check.
type Scenario struct {
	Name  string
	Build loadgen.Request
	Check loadgen.Check
}

// mobileUserAgents are realistic user agents of phones opening a share link
// from a chat app; Redirect cycles through them.
var mobileUserAgents = [...]string{
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003130) NetType/WIFI Language/zh_CN",
	"Mozilla/5.0 (Linux; Android 14; SM-S9180 Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.120 Mobile Safari/537.36 WhatsApp/2.24.6.77",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 Line/14.6.0",
}

// Redirect returns the click scenario: GET /<code> with codes taken in turn,
// X-Forwarded-For from ips (if any) and a mobile user agent; the response
// must be a 302 with a Location. The node must trust the load generator's
// address as a proxy for X-Forwarded-For to count.
func Redirect(codes []string, ips []netip.Addr) Scenario {
	paths := make([][]byte, len(codes))
	for i, c := range codes {
		paths[i] = []byte("/" + c)
	}
	cl := newClients(ips)
	return Scenario{
		Name: NameRedirect,
		Build: func(req *fasthttp.Request, seq uint64) {
			req.Header.SetMethod(fasthttp.MethodGet)
			if len(paths) > 0 {
				req.URI().SetPathBytes(paths[seq%uint64(len(paths))])
			}
			cl.set(req, seq)
		},
		Check: checkRedirect,
	}
}

// clients holds pre-rendered client addresses.
type clients []string

func newClients(ips []netip.Addr) clients {
	c := make(clients, len(ips))
	for i, ip := range ips {
		c[i] = ip.String()
	}
	return c
}

func (c clients) set(req *fasthttp.Request, seq uint64) {
	if len(c) > 0 {
		// A prime stride decorrelates the client from the code.
		req.Header.Set("X-Forwarded-For", c[(seq*7919)%uint64(len(c))])
	}
	req.Header.SetUserAgent(mobileUserAgents[seq%uint64(len(mobileUserAgents))])
}

func checkRedirect(resp *fasthttp.Response) error {
	if resp.StatusCode() != fasthttp.StatusFound {
		return fmt.Errorf("%w: status %d, want 302", ErrUnexpected, resp.StatusCode())
	}
	if len(resp.Header.Peek("Location")) == 0 {
		return fmt.Errorf("%w: 302 without Location", ErrUnexpected)
	}
	return nil
}

// RegisterConfig configures the registration scenario.
type RegisterConfig struct {
	// Campaign is the campaign id.
	Campaign string
	// Clicks are rr_click tokens, used in turn; when empty, Codes are sent
	// in the "code" field instead.
	Clicks, Codes []string
	// Wait, when positive, asks for the ledger's decision (?wait=) and
	// names the scenario "register-decision"; zero measures the
	// acknowledgement ("register-ack").
	Wait time.Duration
	// Token is the platform bearer token.
	Token string
	// InviteePrefix makes invitee names unique across runs; empty means a
	// random prefix chosen by Register.
	InviteePrefix string
	// IPs, if any, are sent as X-Forwarded-For.
	IPs []netip.Addr
}

// registrar renders registration requests; it is immutable once built.
type registrar struct {
	path, auth string
	head       string // {"campaign":"…",
	invitee    string // ,"invitee":"prefix-
	clicks     []string
	codes      []string
	cl         clients
}

func newRegistrar(c RegisterConfig) *registrar {
	prefix := c.InviteePrefix
	if prefix == "" {
		prefix = randomPrefix()
	}
	r := &registrar{
		path:    "/v1/registrations",
		auth:    "Bearer " + c.Token,
		head:    `{"campaign":` + quote(c.Campaign) + `,`,
		invitee: `,"invitee":` + strings.TrimSuffix(quote(prefix+"-"), `"`),
		cl:      newClients(c.IPs),
	}
	if c.Wait > 0 {
		r.path += "?wait=" + c.Wait.String()
	}
	for _, t := range c.Clicks {
		r.clicks = append(r.clicks, quote(t))
	}
	for _, t := range c.Codes {
		r.codes = append(r.codes, quote(t))
	}
	return r
}

// build renders registration seq; field is "click" or "code" and ref its
// JSON-quoted value.
func (r *registrar) build(req *fasthttp.Request, seq uint64, field, ref string) {
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(r.path)
	req.Header.Set("Authorization", r.auth)
	req.Header.SetContentType("application/json")
	var num [24]byte
	req.AppendBodyString(r.head)
	req.AppendBodyString(`"` + field + `":`)
	req.AppendBodyString(ref)
	req.AppendBodyString(r.invitee)
	req.AppendBody(strconv.AppendUint(num[:0], seq, 10))
	req.AppendBodyString(`","device":"bench-`)
	req.AppendBody(strconv.AppendUint(num[:0], seq, 36))
	req.AppendBodyString(`"}`)
	r.cl.set(req, seq)
}

// buildDefault renders registration seq with a configured click or code.
func (r *registrar) buildDefault(req *fasthttp.Request, seq uint64) {
	switch {
	case len(r.clicks) > 0:
		r.build(req, seq, "click", r.clicks[seq%uint64(len(r.clicks))])
	case len(r.codes) > 0:
		r.build(req, seq, "code", r.codes[seq%uint64(len(r.codes))])
	default:
		r.build(req, seq, "code", `""`)
	}
}

// Register returns the registration scenario: POST /v1/registrations with
// a fresh invitee per request ("<prefix>-<seq>"), so every registration is
// a new one. Without Wait it expects 202 (or 200 if decided at once); with
// Wait it expects 200 (a 202 means the decision missed the wait and counts
// as unexpected_status). Run the two as separate scenarios to report
// acknowledgement and decision latency apart.
func Register(c RegisterConfig) Scenario {
	r := newRegistrar(c)
	if c.Wait > 0 {
		return Scenario{Name: NameRegisterDecision, Build: r.buildDefault, Check: checkDecision}
	}
	return Scenario{Name: NameRegisterAck, Build: r.buildDefault, Check: checkAck}
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return "bench-" + hex.EncodeToString(b[:])
}

func checkAck(resp *fasthttp.Response) error {
	switch resp.StatusCode() {
	case fasthttp.StatusAccepted, fasthttp.StatusOK:
		return nil
	}
	return fmt.Errorf("%w: status %d, want 202 or 200", ErrUnexpected, resp.StatusCode())
}

func checkDecision(resp *fasthttp.Response) error {
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("%w: status %d, want 200 (decision within the wait)", ErrUnexpected, resp.StatusCode())
	}
	return nil
}

// FunnelConfig configures the funnel scenario.
type FunnelConfig struct {
	// Codes are the share codes clicked; IPs the clients (X-Forwarded-For).
	Codes []string
	IPs   []netip.Addr
	// Conversion is the fraction of requests that are registrations, in
	// [0, 1]; the rest are clicks.
	Conversion float64
	// Register configures the registrations; its Clicks and Codes are
	// ignored: a registration uses the rr_click token of a recent click
	// (or a code, before any click has returned one).
	Register RegisterConfig
}

// tokenRing keeps the most recent click tokens seen in redirects, JSON-quoted.
type tokenRing struct {
	mu   sync.Mutex
	toks []string
	next int
}

const ringSize = 1024

func (r *tokenRing) put(t string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.toks) < ringSize {
		r.toks = append(r.toks, t)
		return
	}
	r.toks[r.next] = t
	r.next = (r.next + 1) % ringSize
}

func (r *tokenRing) get(seq uint64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.toks) == 0 {
		return "", false
	}
	return r.toks[seq%uint64(len(r.toks))], true
}

// IsRegistration tells whether request seq of a funnel with the given
// conversion rate is a registration: exactly ⌊n·conversion⌋ of the first n
// requests are, spread evenly.
func IsRegistration(seq uint64, conversion float64) bool {
	return uint64(float64(seq+1)*conversion) > uint64(float64(seq)*conversion)
}

// Funnel returns a mixed scenario that picks, by seq, a click (GET /<code>)
// or a registration at the conversion rate. Registrations carry the rr_click
// token from the Location of an earlier click of this scenario. The Check
// accepts a 302 with Location, a 202 or a 200 (it cannot see which request
// was sent); with Register.Wait > 0 a 202 is still accepted.
func Funnel(c FunnelConfig) (Scenario, error) {
	if !(c.Conversion >= 0 && c.Conversion <= 1) {
		return Scenario{}, fmt.Errorf("%w: funnel conversion %v not within [0, 1]", ErrInvalid, c.Conversion)
	}
	if len(c.Codes) == 0 {
		return Scenario{}, fmt.Errorf("%w: funnel without codes to click", ErrInvalid)
	}
	click := Redirect(c.Codes, c.IPs)
	rc := c.Register
	rc.IPs = c.IPs
	rc.Clicks, rc.Codes = nil, c.Codes
	reg := newRegistrar(rc)
	ring := &tokenRing{}
	return Scenario{
		Name: NameFunnel,
		Build: func(req *fasthttp.Request, seq uint64) {
			if !IsRegistration(seq, c.Conversion) {
				click.Build(req, seq)
				return
			}
			if tok, ok := ring.get(seq); ok {
				reg.build(req, seq, "click", tok)
				return
			}
			reg.buildDefault(req, seq)
		},
		Check: func(resp *fasthttp.Response) error {
			if resp.StatusCode() == fasthttp.StatusFound {
				if err := checkRedirect(resp); err != nil {
					return err
				}
				if tok := ClickToken(resp.Header.Peek("Location")); tok != "" {
					ring.put(quote(tok))
				}
				return nil
			}
			return checkAck(resp)
		},
	}, nil
}

// ClickToken returns the rr_click query parameter of a redirect Location,
// or "" if there is none or the Location does not parse.
func ClickToken(location []byte) string {
	u, err := url.Parse(string(location))
	if err != nil {
		return ""
	}
	return u.Query().Get("rr_click")
}
