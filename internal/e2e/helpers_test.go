package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/refrouter/refrouter/internal/pgtest"
	"github.com/refrouter/refrouter/internal/testutil"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const mobileUA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"

// campaignBody returns a campaign (API.md shape) with every fraud hold disabled, so that
// tests may register right after a click, many times from 127.0.0.1.
func campaignBody(id string, perInviterCap int) map[string]any {
	return map[string]any{
		"id": id, "destination": "https://live.example.com/room/42", "allowed_hosts": []string{"live.example.com"},
		"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z",
		"budget":          map[string]any{"value": 1_000_000},
		"invitee_reward":  map[string]any{"value": 5},
		"inviter_rewards": []map[string]any{{"from": 1, "to": 2, "value": 10}, {"from": 3, "value": 20}},
		"per_inviter_cap": perInviterCap, "attribution_window": "168h", "attribution_model": "last_click",
		"fraud": map[string]any{"min_click_to_register": "-1s", "max_per_ip_per_hour": -1,
			"max_per_device_per_day": -1, "max_per_inviter_per_hour": -1},
	}
}

// grant is one reward as the API and the grants table show it.
type grant struct {
	User  string `json:"user"`
	Role  string `json:"role"`
	Value int64  `json:"value"`
}

// regView is the API shape of a registration (GET /v1/registrations/{id}).
type regView struct {
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	Reason   string  `json:"reason"`
	Campaign string  `json:"campaign"`
	Inviter  string  `json:"inviter"`
	Invitee  string  `json:"invitee"`
	Grants   []grant `json:"grants"`
}

// acked is a registration the API acknowledged (200 or 202), with the node that did.
type acked struct {
	ID, Node, Region, Campaign, Inviter, Invitee string
	Country                                      string // expected country of the client IP
	Decision                                     regView
}

// httpClient is for goroutines, where testutil.Client (which fails the test on transport
// errors) cannot be used: it returns errors instead.
var httpClient = &testutil.Client{HTTP: &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}}

// call sends one JSON request and returns the status and body.
func call(method, url, token string, body any, hdr ...string) (int, []byte, error) {
	r, err := httpClient.Send(context.Background(), method, url, token, body, hdr...)
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Body, nil
}

// api is a cluster as the tests use it: node URLs, names, regions and tokens.
type api struct {
	t               testing.TB
	c               *testutil.Client
	urls            []string
	names, regions  []string
	admin, platform string
}

func (a *api) createCampaign(node int, body map[string]any) {
	a.t.Helper()
	testutil.Expect(a.t, a.c.Do(a.t, "POST", a.urls[node]+"/v1/campaigns", a.admin, body), 201, "create campaign")
	// The campaign reaches the other replicas through the raft log, a little later.
	for i, u := range a.urls {
		testutil.WaitFor(a.t, 10*time.Second, fmt.Sprintf("campaign on node %d", i), func() bool {
			st, _, err := call("GET", u+"/v1/campaigns/"+body["id"].(string), a.admin, nil)
			return err == nil && st == 200
		})
	}
}

// link issues inviter's share link on node and returns the code.
func (a *api) link(node int, campaign, inviter string) string {
	a.t.Helper()
	r := a.c.Do(a.t, "POST", a.urls[node]+"/v1/campaigns/"+campaign+"/links", a.platform, map[string]string{"inviter": inviter})
	testutil.Expect(a.t, r, 201, "issue link")
	var l struct{ Code string }
	r.JSON(a.t, &l)
	if len(l.Code) != 16 {
		a.t.Fatalf("link code %q", l.Code)
	}
	return l.Code
}

// click follows code on node with a mobile UA from client IP ip (forwarded through the
// trusted loopback proxy) and returns the click token.
func (a *api) click(node int, code, ip string) string {
	a.t.Helper()
	r := a.c.Do(a.t, "GET", a.urls[node]+"/"+code, "", nil, "User-Agent", mobileUA, "X-Forwarded-For", ip)
	testutil.Expect(a.t, r, 302, "click")
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		a.t.Fatal(err)
	}
	if loc.Host != "live.example.com" {
		a.t.Fatalf("click redirected to %s", loc)
	}
	tok := loc.Query().Get("rr_click")
	if tok == "" {
		a.t.Fatalf("no rr_click in %s", loc)
	}
	return tok
}

// register posts a registration on node and returns its id and the answer's status.
func (a *api) register(node int, body map[string]string, query string, hdr ...string) (string, int) {
	a.t.Helper()
	r := a.c.Do(a.t, "POST", a.urls[node]+"/v1/registrations"+query, a.platform, body, hdr...)
	if r.Status != 200 && r.Status != 202 {
		a.t.Fatalf("register %v on node %d: %d %s", body, node, r.Status, r.Body)
	}
	var v regView
	r.JSON(a.t, &v)
	if v.ID == "" {
		a.t.Fatalf("register: no id in %s", r.Body)
	}
	return v.ID, r.Status
}

// decision polls node until registration id is decided and returns the decision.
func (a *api) decision(node int, id string) regView {
	a.t.Helper()
	var v regView
	testutil.WaitFor(a.t, 30*time.Second, "decision of "+id, func() bool {
		st, b, err := call("GET", a.urls[node]+"/v1/registrations/"+id, a.platform, nil)
		if err != nil || st != 200 {
			return false
		}
		v = regView{}
		return json.Unmarshal(b, &v) == nil && v.Status != "pending"
	})
	return v
}

// stats reads a campaign's ledger stats (the numeric ones) from node.
func (a *api) stats(node int, campaign string) map[string]float64 {
	a.t.Helper()
	r := a.c.Do(a.t, "GET", a.urls[node]+"/v1/campaigns/"+campaign, a.admin, nil)
	testutil.Expect(a.t, r, 200, "get campaign")
	var v struct{ Stats map[string]any }
	r.JSON(a.t, &v)
	out := map[string]float64{}
	for k, x := range v.Stats {
		if f, ok := x.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// waitInviters waits until every node's replica knows n inviters of campaign (the
// inviter numbers that links carry are assigned through the raft log).
func (a *api) waitInviters(campaign string, n int) {
	a.t.Helper()
	for i := range a.urls {
		testutil.WaitFor(a.t, 10*time.Second, fmt.Sprintf("%d inviters on node %d", n, i), func() bool {
			return int(a.stats(i, campaign)["inviters"]) >= n
		})
	}
}

// openPool connects to dsn for the test's reads; closed at cleanup.
func openPool(tb testing.TB, dsn string) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		tb.Fatalf("pgxpool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// dedicatedServer starts a PostgreSQL server owned by this test (so that stopping it does
// not disturb other tests of the binary), skipping without binaries, failing with CI=true.
func dedicatedServer(tb testing.TB) *pgtest.Server {
	tb.Helper()
	srv, err := pgtest.StartServer()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("start dedicated PostgreSQL (CI=true): %v", err)
		}
		tb.Skipf("dedicated PostgreSQL unavailable: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// dbRow is one registration as the database holds it, with its decision and grants.
type dbRow struct {
	ID, RegistrationID, Node, Region, Campaign, Inviter, Invitee, Country string
	Decisions                                                             []string // status of each decision row
	Grants                                                                []grant
}

// snapshot reads every registration of campaign with its decisions and grants, plus the
// decisions and grants that have no registration row (which should not exist).
type snapshot struct {
	regs           map[string]*dbRow
	naturalDup     []string // (campaign, invitee) with more than one registration row
	orphanDecision int      // decision rows without a registration row
	orphanGrant    int      // grant rows without a registration row
	dupGrantRole   int      // (registration_id, role) with more than one grant row (tasks aside: one grant per task unlocked)
}

func readSnapshot(ctx context.Context, pool *pgxpool.Pool, campaign string) (*snapshot, error) {
	s := &snapshot{regs: map[string]*dbRow{}}
	rows, err := pool.Query(ctx, `SELECT id, registration_id, node, region, campaign, inviter, invitee, country
		FROM registrations WHERE campaign = $1`, campaign)
	if err != nil {
		return nil, fmt.Errorf("read registrations: %w", err)
	}
	for rows.Next() {
		var r dbRow
		if err := rows.Scan(&r.ID, &r.RegistrationID, &r.Node, &r.Region, &r.Campaign, &r.Inviter, &r.Invitee, &r.Country); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan registration: %w", err)
		}
		s.regs[r.RegistrationID] = &r
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read registrations: %w", err)
	}
	rows, err = pool.Query(ctx, `SELECT invitee FROM registrations WHERE campaign = $1 GROUP BY invitee HAVING count(*) > 1`, campaign)
	if err != nil {
		return nil, fmt.Errorf("read duplicates: %w", err)
	}
	for rows.Next() {
		var inv string
		if err := rows.Scan(&inv); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan duplicate: %w", err)
		}
		s.naturalDup = append(s.naturalDup, inv)
	}
	rows.Close()
	rows, err = pool.Query(ctx, `SELECT registration_id, status FROM decisions WHERE campaign = $1`, campaign)
	if err != nil {
		return nil, fmt.Errorf("read decisions: %w", err)
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan decision: %w", err)
		}
		if r := s.regs[id]; r != nil {
			r.Decisions = append(r.Decisions, st)
		} else {
			s.orphanDecision++
		}
	}
	rows.Close()
	rows, err = pool.Query(ctx, `SELECT registration_id, user_id, role, value FROM grants WHERE campaign = $1`, campaign)
	if err != nil {
		return nil, fmt.Errorf("read grants: %w", err)
	}
	for rows.Next() {
		var id string
		var g grant
		if err := rows.Scan(&id, &g.User, &g.Role, &g.Value); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan grant: %w", err)
		}
		if r := s.regs[id]; r != nil {
			r.Grants = append(r.Grants, g)
		} else {
			s.orphanGrant++
		}
	}
	rows.Close()
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM grants WHERE campaign = $1
		AND role <> 'task' GROUP BY registration_id, role HAVING count(*) > 1) d`, campaign).Scan(&s.dupGrantRole); err != nil {
		return nil, fmt.Errorf("read duplicate grants: %w", err)
	}
	return s, nil
}

// complete reports whether every acknowledged registration has its registration row, one
// decision row and all its grants in the snapshot.
func (s *snapshot) complete(acks map[string]*acked) bool {
	for id, a := range acks {
		r := s.regs[id]
		if r == nil || len(r.Decisions) == 0 || len(r.Grants) < len(a.Decision.Grants) {
			return false
		}
	}
	return true
}

// waitReplicated polls the database until every acknowledged registration (with its
// decision and grants) is there, then checks that each is there exactly once and agrees
// with what the API said. extra, when not nil, is asked about registration rows that were
// not acknowledged (recorded durably by a node killed before it answered): it returns the
// ledger's decision, or false when the ledger does not know the registration.
func waitReplicated(t *testing.T, pool *pgxpool.Pool, campaign string, acks map[string]*acked,
	extra func(id string) (regView, bool)) *snapshot {
	t.Helper()
	var s *snapshot
	var lastErr error
	testutil.WaitFor(t, 45*time.Second, fmt.Sprintf("%d acknowledged registrations replicated", len(acks)), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, lastErr = readSnapshot(ctx, pool, campaign)
		return lastErr == nil && s.complete(acks)
	})
	// An invitee may have several registration rows (two nodes acknowledging
	// the same invitee at once give two ids: ARCHITECTURE.md), but at most
	// one of them holds its attribution (I3); the others are "duplicate".
	attributed := map[string]int{}
	for _, r := range s.regs {
		for _, d := range r.Decisions {
			if d == "rewarded" || d == "capped" || d == "held" {
				attributed[r.Invitee]++
				break
			}
		}
	}
	var twice []string
	for _, inv := range s.naturalDup {
		if attributed[inv] > 1 {
			twice = append(twice, inv)
		}
	}
	if s.orphanDecision != 0 || s.orphanGrant != 0 || s.dupGrantRole != 0 || len(twice) != 0 {
		t.Errorf("orphan decisions %d, orphan grants %d, duplicate (registration, role) grants %d, invitees attributed twice %v",
			s.orphanDecision, s.orphanGrant, s.dupGrantRole, twice)
	}
	for id, a := range acks {
		r := s.regs[id]
		if r.ID != id || r.Node != a.Node || r.Region != a.Region || r.Inviter != a.Inviter || r.Invitee != a.Invitee {
			t.Errorf("registration %s in db %+v, acknowledged as %+v", id, *r, *a)
		}
		if len(r.Decisions) != 1 || r.Decisions[0] != a.Decision.Status {
			t.Errorf("registration %s: decision rows %v, want exactly one %q", id, r.Decisions, a.Decision.Status)
		}
		if !sameGrants(r.Grants, a.Decision.Grants) {
			t.Errorf("registration %s: grants in db %v, api %v", id, r.Grants, a.Decision.Grants)
		}
	}
	for id, r := range s.regs {
		if acks[id] != nil {
			continue
		}
		if extra == nil {
			t.Errorf("registration %s (%s) in db was never acknowledged", id, r.Invitee)
			continue
		}
		d, ok := extra(id)
		if !ok {
			t.Errorf("registration %s (%s) in db is unknown to the ledger", id, r.Invitee)
			continue
		}
		if len(r.Decisions) != 1 || r.Decisions[0] != d.Status || !sameGrants(r.Grants, d.Grants) {
			t.Errorf("unacknowledged registration %s: db decisions %v grants %v, ledger %+v", id, r.Decisions, r.Grants, d)
		}
	}
	return s
}

func sameGrants(a, b []grant) bool {
	key := func(gs []grant) []string {
		out := make([]string, len(gs))
		for i, g := range gs {
			out[i] = fmt.Sprintf("%s/%s/%d", g.Role, g.User, g.Value)
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// traffic registers invitees on a set of nodes from background goroutines and keeps what
// was acknowledged. Transport errors and 5xx from a node that is down are expected and
// counted; a 4xx is a test failure.
type traffic struct {
	a        *api
	campaign string
	codes    []string // share codes to register through, by inviter index
	inviters []string

	mu      sync.Mutex
	paused  map[int]bool
	acks    map[string]*acked
	perNode []int
	fails   []int
	bad     []string // unexpected answers
	seq     int

	stop chan struct{}
	wg   sync.WaitGroup
}

func newTraffic(a *api, campaign string, inviters, codes []string) *traffic {
	return &traffic{a: a, campaign: campaign, inviters: inviters, codes: codes, acks: map[string]*acked{}, paused: map[int]bool{},
		perNode: make([]int, len(a.urls)), fails: make([]int, len(a.urls)), stop: make(chan struct{})}
}

// run starts one worker per node in nodes, each registering a new invitee every pace.
func (tr *traffic) run(nodes []int, pace time.Duration) {
	for _, n := range nodes {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for {
				select {
				case <-tr.stop:
					return
				case <-tick.C:
				}
				tr.one(n)
			}
		}()
	}
}

// pause stops (or resumes) sending to node n.
func (tr *traffic) pause(n int, p bool) {
	tr.mu.Lock()
	tr.paused[n] = p
	tr.mu.Unlock()
}

func (tr *traffic) one(n int) {
	tr.mu.Lock()
	if tr.paused[n] {
		tr.mu.Unlock()
		return
	}
	tr.seq++
	i := tr.seq
	tr.mu.Unlock()
	k := i % len(tr.codes)
	invitee := fmt.Sprintf("%s-n%d-%d", tr.campaign, n, i)
	body := map[string]string{"campaign": tr.campaign, "code": tr.codes[k], "invitee": invitee, "device": "dev-" + invitee}
	st, b, err := call("POST", tr.a.urls[n]+"/v1/registrations", tr.a.platform, body)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch {
	case err != nil || st >= 500:
		tr.fails[n]++
	case st == 200 || st == 202:
		var v regView
		if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
			tr.bad = append(tr.bad, fmt.Sprintf("node %d: %d %s", n, st, b))
			return
		}
		tr.acks[v.ID] = &acked{ID: v.ID, Node: tr.a.names[n], Region: tr.a.regions[n], Campaign: tr.campaign,
			Inviter: tr.inviters[k], Invitee: invitee}
		tr.perNode[n]++
	default:
		tr.bad = append(tr.bad, fmt.Sprintf("node %d: %d %s", n, st, b))
	}
}

// counts returns the acknowledgements so far, in total and on node n.
func (tr *traffic) counts(n int) (total, onNode, fails int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.acks), tr.perNode[n], tr.fails[n]
}

// waitAcks waits until at least total acknowledgements, at least onNode of them by node n.
func (tr *traffic) waitAcks(t *testing.T, total, n, onNode int, what string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, what, func() bool {
		a, o, _ := tr.counts(n)
		return a >= total && o >= onNode
	})
}

// finish stops the workers and returns the acknowledged registrations; it fails the
// test on any unexpected answer.
func (tr *traffic) finish(t *testing.T) map[string]*acked {
	t.Helper()
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.bad) > 0 {
		t.Fatalf("%d unexpected answers, first: %s", len(tr.bad), strings.Join(tr.bad[:min(3, len(tr.bad))], "; "))
	}
	return tr.acks
}
