package localcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/node"
	"github.com/refrouter/refrouter/node/localcluster"
)

// faultsCampaign is the campaign of TestInvariantsUnderLeaderFailover: flat
// rewards (3 to the inviter, 2 to the invitee), a budget of 69 rewards (minus
// 2, so that the last reward does not fit exactly), 15 rewarded invites per
// inviter, fraud checks off, six inviters of unequal popularity.
var faultsCampaign = spec{
	Budget:       5*69 - 2,
	Cap:          15,
	InviterValue: 3,
	InviteeValue: 2,
	Inviters:     []string{"ann", "ben", "cho", "dev", "eli", "fay"},
}

// inviterWeights skew the registrations so the popular inviters hit their
// cap while the others keep earning until the budget runs out.
var inviterWeights = []int{30, 25, 15, 12, 10, 8}

const (
	faultsRegistrations = 300
	faultsClients       = 12
	faultsStopAt        = 90 // the leader stops once this many registrations are sent
)

// regJob is one registration a client sends.
type regJob struct {
	in   regInput
	wait string
}

// httpAPI is a small HTTP client that reports errors instead of failing the
// test, so that client goroutines can use it. It keeps one connection pool
// per node, so that the connections to a stopped node can be dropped.
type httpAPI struct {
	token   string
	mu      sync.Mutex
	clients map[string]*http.Client // by host:port
}

// client returns the client of a node's host:port.
func (a *httpAPI) client(host string) *http.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients == nil {
		a.clients = map[string]*http.Client{}
	}
	c, ok := a.clients[host]
	if !ok {
		c = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * faultsClients}}
		a.clients[host] = c
	}
	return c
}

// renew drops the connections to a node: later requests open new ones.
func (a *httpAPI) renew(host string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[host]; ok {
		c.CloseIdleConnections()
		delete(a.clients, host)
	}
}

// close drops every idle connection.
func (a *httpAPI) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.clients {
		c.CloseIdleConnections()
	}
}

func (a *httpAPI) do(ctx context.Context, method, url string, body any) (int, []byte, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return 0, nil, fmt.Errorf("parse %q: %w", url, err)
	}
	c := testutil.Client{HTTP: a.client(u.Host)}
	r, err := c.Send(ctx, method, url, a.token, body)
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Body, nil
}

// apiDecision is the API shape of a registration (API.md).
type apiDecision struct {
	ID       string         `json:"id"`
	Status   string         `json:"status"`
	Reason   string         `json:"reason"`
	Campaign string         `json:"campaign"`
	Inviter  string         `json:"inviter"`
	Invitee  string         `json:"invitee"`
	Grants   []ledger.Grant `json:"grants"`
}

// outputOf turns a decided registration into the model's output, noting
// grants that do not have the expected shape.
func outputOf(in regInput, d apiDecision) regOutput {
	o := regOutput{ID: d.ID, Status: d.Status, Reason: d.Reason, Inviter: d.Inviter}
	if d.Invitee != in.Invitee {
		o.BadGrants = fmt.Sprintf("answer names invitee %q, want %q", d.Invitee, in.Invitee)
	}
	for _, g := range d.Grants {
		switch {
		case g.Role == ledger.RoleInviter && g.User == d.Inviter && o.InviterValue == 0:
			o.InviterValue = g.Value
		case g.Role == ledger.RoleInvitee && g.User == d.Invitee && o.InviteeValue == 0:
			o.InviteeValue = g.Value
		default:
			o.BadGrants += fmt.Sprintf(" unexpected grant %+v", g)
		}
	}
	return o
}

// history collects the operations of all clients.
type history struct {
	mu       sync.Mutex
	ops      []porcupine.Operation
	deferred []deferredOp // 202 answers still pending when the client moved on
	counts   map[string]int
}

// deferredOp is an acknowledged registration whose decision is fetched at
// the end; its operation's Return is set then.
type deferredOp struct {
	op   int // index in ops
	id   string
	node int
}

func (h *history) add(op porcupine.Operation, what string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	h.counts[what]++
	return len(h.ops) - 1
}

// TestInvariantsUnderLeaderFailover runs a real three-node cluster (raft,
// memberlist, fasthttp on 127.0.0.1), sends a few hundred registrations to
// every node from concurrent clients (some invitees twice, on the same node
// or on two nodes), stops the raft leader abruptly in the middle, restarts
// it at the end, and checks on every replica the budget (I1), the
// per-inviter cap (I2), one attribution per invitee (I3) and that every
// acknowledged registration has one decision, the same everywhere (I4). The
// clients' history is then checked for linearizability against the
// campaign's sequential specification (model_test.go) with porcupine.
func TestInvariantsUnderLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test on a real cluster")
	}
	lc := testutil.StartCluster(t, nil, nil)
	n := len(lc.Nodes)
	urls := make([]string, n)
	for i, c := range lc.Configs {
		urls[i] = c.PublicURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	platform := &httpAPI{token: lc.Secrets.PlatformToken}
	defer platform.close()
	admin := &httpAPI{token: lc.Secrets.AdminToken}
	defer admin.close()
	sp := faultsCampaign

	camp := testutil.Campaign("faults", int(sp.Budget), sp.Cap)
	camp["inviter_rewards"] = []map[string]any{{"from": 1, "value": sp.InviterValue}}
	camp["invitee_reward"] = map[string]any{"value": sp.InviteeValue}
	camp["fraud"] = map[string]any{"min_click_to_register": "-1s", "max_per_inviter_per_hour": -1, "max_per_ip_per_hour": -1, "max_per_device_per_day": -1}

	// The campaign, created over the admin API of the last node; then one
	// link per inviter, issued on one node and asked again from the others.
	if st, b, err := admin.do(ctx, "POST", urls[n-1]+"/v1/campaigns", camp); err != nil || st != http.StatusCreated {
		t.Fatalf("create campaign: %d %s %v", st, b, err)
	}
	testutil.WaitFor(t, 10*time.Second, "every replica knows the campaign", func() bool {
		for _, nd := range lc.Nodes {
			if nd.Ledger().Campaigns().ByID("faults") == nil {
				return false
			}
		}
		return true
	})
	// The links, over HTTP from every node: the same code everywhere.
	codes := make([]string, len(sp.Inviters))
	for i, name := range sp.Inviters {
		for k := range n {
			st, b, err := platform.do(ctx, "POST", urls[(i+k)%n]+"/v1/campaigns/faults/links", map[string]string{"inviter": name})
			if err != nil || st != http.StatusCreated {
				t.Fatalf("link for %s: %d %s %v", name, st, b, err)
			}
			var l struct{ Code string }
			if err := json.Unmarshal(b, &l); err != nil || l.Code == "" {
				t.Fatalf("link for %s: %q: %v", name, b, err)
			}
			if k > 0 && l.Code != codes[i] {
				t.Fatalf("link for %s: %s from one node, %s from another", name, codes[i], l.Code)
			}
			codes[i] = l.Code
		}
	}
	testutil.WaitFor(t, 10*time.Second, "every replica knows the inviters", func() bool {
		for _, nd := range lc.Nodes {
			for _, name := range sp.Inviters {
				if _, ok := nd.Ledger().InviterNumber("faults", name); !ok {
					return false
				}
			}
		}
		return true
	})

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("REFROUTER_FAULTS_SEED"); v != "" {
		if _, err := fmt.Sscan(v, &seed); err != nil {
			t.Fatalf("REFROUTER_FAULTS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("registrations from seed %d (REFROUTER_FAULTS_SEED)", seed)
	jobs := makeJobs(rand.New(rand.NewPCG(seed, 5)), n)
	var stopping [8]atomic.Bool // nodes not to send new requests to
	h := &history{counts: map[string]int{}}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }

	// Clients.
	jobc := make(chan regJob)
	closeJobs := sync.OnceFunc(func() { close(jobc) })
	defer closeJobs() // lets the clients end if the test fails early
	var wg sync.WaitGroup
	for c := 0; c < faultsClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobc {
				for stopping[j.in.Node].Load() {
					j.in.Node = (j.in.Node + 1) % n
				}
				runJob(ctx, t, platform, urls, codes, c, j, h, now, &stopping)
			}
		}()
	}

	// The fault: once faultsStopAt registrations are sent, stop the leader
	// with an expired context (no draining of in-flight requests, no
	// graceful memberlist leave to speak of; the node API has no kill).
	victim := -1
	var stopAt int64
	var stopped sync.WaitGroup
	var stopErr error
	var shutdownHung bool
	var failover time.Duration
	for k, j := range jobs {
		if k == faultsStopAt {
			var leader string
			testutil.WaitFor(t, 10*time.Second, "a known leader in the middle of the run", func() bool {
				l, ok := lc.Nodes[k%n].Cluster().Leader()
				leader = l
				return ok
			})
			for i, c := range lc.Configs {
				if c.Name == leader {
					victim = i
				}
			}
			if victim < 0 {
				t.Fatalf("leader %q is not a node of the cluster", leader)
			}
			stopping[victim].Store(true)
			stopAt = now()
			stopped.Add(1)
			go func() {
				defer stopped.Done()
				t0 := time.Now()
				sctx, scancel := context.WithCancel(context.Background())
				scancel()
				res := make(chan error, 1)
				go func() { res <- lc.Nodes[victim].Shutdown(sctx) }()
				select {
				case stopErr = <-res:
				case <-time.After(15 * time.Second):
					shutdownHung = true
				}
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) {
					for i, nd := range lc.Nodes {
						if i == victim {
							continue
						}
						if l, ok := nd.Cluster().Leader(); ok && l != leader {
							failover = time.Since(t0)
							return
						}
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		select {
		case jobc <- j:
		case <-ctx.Done():
			t.Fatal("timed out sending registrations")
		}
	}
	closeJobs()
	wg.Wait()
	stopped.Wait()
	sendDone := time.Since(start)
	if failover == 0 {
		t.Fatalf("no new leader after stopping %s", lc.Configs[victim].Name)
	}
	t.Logf("stopped leader %s (shutdown: %v); a new leader was known after %v; %d registrations sent in %v",
		lc.Configs[victim].Name, stopErr, failover.Round(time.Millisecond), len(jobs), sendDone.Round(time.Millisecond))

	replicas := slices.Clone(lc.Nodes)
	if shutdownHung {
		t.Fatalf("Shutdown of %s did not return within 15s", lc.Configs[victim].Name)
	}
	{
		restartVictim(ctx, t, lc, victim, platform, h)
		replicas[victim] = lc.Nodes[victim]
	}

	// Decisions of the acknowledged registrations still pending: the
	// operation's window is widened until the decision is seen.
	for _, d := range h.deferred {
		dec, ok := pollDecision(ctx, platform, urls[d.node], d.id, 20*time.Second)
		if !ok {
			st, b, err := platform.do(ctx, "GET", urls[d.node]+"/v1/registrations/"+d.id, nil)
			t.Logf("GET %s on %s: %d %s %v", d.id, lc.Configs[d.node].Name, st, b, err)
			for _, nd := range replicas {
				s := nd.Cluster().Status()
				_, decided := nd.Ledger().Registration(d.id)
				t.Logf("%s: %s leader %s term %d commit %d applied %d voters %v nonvoters %v; decided here: %v",
					s.Name, s.RaftState, s.Leader, s.Term, s.CommitIndex, s.AppliedIndex, s.Voters, s.Nonvoters, decided)
			}
			t.Fatalf("I4: acknowledged registration %s (node %s) not decided within 20s after the restart", d.id, lc.Configs[d.node].Name)
		}
		h.ops[d.op].Output = outputOf(h.ops[d.op].Input.(regInput), dec)
		h.ops[d.op].Return = now()
	}

	// Every replica reaches the same applied index.
	var last uint64
	testutil.WaitFor(t, 15*time.Second, "replicas converge", func() bool {
		idx := replicas[0].Ledger().LastIndex()
		for _, nd := range replicas[1:] {
			if nd.Ledger().LastIndex() != idx {
				return false
			}
		}
		ok := idx == last
		last = idx
		return ok
	})
	checkReplicas(t, replicas, sp, h)
	outcomes := map[string]int{}
	for _, op := range h.ops {
		o := op.Output.(regOutput)
		k := o.Status + "/" + o.Reason
		if o.Unknown {
			k = "no answer"
		}
		if op.Call > stopAt {
			k += " (sent after the stop)"
		}
		outcomes[k]++
	}
	t.Logf("outcomes seen by the clients: %v", outcomes)

	// Linearizability of what the clients saw.
	t0 := time.Now()
	verdict, info := porcupine.CheckOperationsVerbose(sp.model(), h.ops, 30*time.Second)
	t.Logf("porcupine: %s on %d operations in %v; answers: %v", verdict, len(h.ops), time.Since(t0).Round(time.Millisecond), h.counts)
	if verdict != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("faults-history-%d.html", time.Now().UnixNano()))
		if err := porcupine.VisualizePath(sp.model(), info, path); err == nil {
			t.Logf("history visualization: %s", path)
		}
		t.Fatalf("history is %s against the campaign spec", verdict)
	}
	// The checker has teeth on this very history: early in it (so that the
	// search stays small), the first reward turned into a budget cap (the
	// budget cannot be spent yet), or a second reward for its invitee just
	// after it, must be rejected.
	first := -1
	for i, op := range h.ops {
		if o := op.Output.(regOutput); o.Status == "rewarded" && (first < 0 || op.Return < h.ops[first].Return) {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("no registration was rewarded")
	}
	capped := slices.Clone(h.ops)
	o := capped[first].Output.(regOutput)
	o.Status, o.Reason, o.InviterValue, o.InviteeValue = "capped", "budget", 0, 0
	capped[first].Output = o
	fo, fi := h.ops[first].Output.(regOutput), h.ops[first].Input.(regInput)
	again := append(slices.Clone(h.ops), porcupine.Operation{
		Input: regInput{Invitee: fi.Invitee, Inviter: fi.Inviter}, Call: h.ops[first].Return + 1, Return: h.ops[first].Return + 2,
		Output: regOutput{ID: fo.ID + "-again", Status: "rewarded", Inviter: fo.Inviter, InviterValue: fo.InviterValue, InviteeValue: fo.InviteeValue},
	})
	for name, bad := range map[string][]porcupine.Operation{"an early reward turned into a budget cap": capped, "a second reward for one invitee": again} {
		if v := porcupine.CheckOperationsTimeout(sp.model(), bad, 20*time.Second); v != porcupine.Illegal {
			t.Errorf("the checker finds the history with %s %s, want Illegal", name, v)
		}
	}
}

// makeJobs returns the registrations to send: mostly new invitees, a quarter
// of them again (shortly after, so often concurrently), on the same node or
// another one, through the same inviter or another.
func makeJobs(r *rand.Rand, nodes int) []regJob {
	pick := func() int {
		x := r.IntN(100)
		for i, w := range inviterWeights {
			if x < w {
				return i
			}
			x -= w
		}
		return len(inviterWeights) - 1
	}
	waits := []string{"0s", "1s", "3s"}
	var jobs []regJob
	for k := 0; len(jobs) < faultsRegistrations; k++ {
		j := regJob{in: regInput{Invitee: fmt.Sprintf("u%03d", k), Inviter: pick(), Node: r.IntN(nodes)}, wait: waits[r.IntN(len(waits))]}
		if k > 0 && r.IntN(4) == 0 {
			prev := jobs[len(jobs)-1-r.IntN(min(len(jobs), 10))]
			j.in.Invitee = prev.in.Invitee
			if r.IntN(2) == 0 {
				j.in.Node = prev.in.Node
			}
			if r.IntN(2) == 0 {
				j.in.Inviter = prev.in.Inviter
			}
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// runJob sends one registration and records it in the history.
func runJob(ctx context.Context, t *testing.T, api *httpAPI, urls, codes []string, client int, j regJob, h *history, now func() int64, stopping *[8]atomic.Bool) {
	body := map[string]string{"campaign": "faults", "code": codes[j.in.Inviter], "invitee": j.in.Invitee, "device": "dev-" + j.in.Invitee}
	op := porcupine.Operation{ClientId: client, Input: j.in, Call: now()}
	st, b, err := api.do(ctx, "POST", urls[j.in.Node]+"/v1/registrations?wait="+j.wait, body)
	switch {
	case err == nil && st == http.StatusOK:
		op.Return = now()
		var d apiDecision
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("registration answer %q: %v", b, err)
			return
		}
		op.Output = outputOf(j.in, d)
		h.add(op, "200")
	case err == nil && st == http.StatusAccepted:
		var a struct{ ID, Status string }
		if err := json.Unmarshal(b, &a); err != nil || a.ID == "" || a.Status != "pending" {
			t.Errorf("registration acknowledgement %q: %v", b, err)
			return
		}
		if d, ok := pollDecision(ctx, api, urls[j.in.Node], a.ID, 4*time.Second); ok {
			op.Return = now()
			op.Output = outputOf(j.in, d)
			h.add(op, "202")
			return
		}
		// Decided later (or after the node's restart): fetched at the end.
		op.Return = 1 << 62
		op.Output = regOutput{Unknown: true}
		i := h.add(op, "202 decided at the end")
		h.mu.Lock()
		h.deferred = append(h.deferred, deferredOp{op: i, id: a.ID, node: j.in.Node})
		h.mu.Unlock()
	case stopping[j.in.Node].Load():
		// In flight on the node being stopped: no answer, so it may or may
		// not have taken effect.
		op.Return = 1 << 62
		op.Output = regOutput{Unknown: true}
		h.add(op, "lost with the stopped node")
	default:
		t.Errorf("registration of %s on node %d: status %d %s: %v", j.in.Invitee, j.in.Node, st, b, err)
	}
}

// pollDecision fetches a registration from one node until it is decided or
// timeout passes (or the node stops answering).
func pollDecision(ctx context.Context, api *httpAPI, url, id string, timeout time.Duration) (apiDecision, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, b, err := api.do(ctx, "GET", url+"/v1/registrations/"+id, nil)
		if err != nil {
			return apiDecision{}, false
		}
		var d apiDecision
		if st == http.StatusOK && json.Unmarshal(b, &d) == nil && d.Status != "pending" {
			return d, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return apiDecision{}, false
}

// checkReplicas checks I1-I4 on every replica and that the replicas agree.
func checkReplicas(t *testing.T, nodes []*node.Node, sp spec, h *history) {
	t.Helper()
	// What the clients were told, by registration id.
	told := map[string]regOutput{}
	invitees := map[string]bool{}
	unknown := 0
	for _, op := range h.ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		invitees[in.Invitee] = true
		if out.Unknown {
			unknown++
			continue
		}
		if out.BadGrants != "" {
			t.Errorf("registration %s of %s: %s", out.ID, in.Invitee, out.BadGrants)
		}
		if prev, ok := told[out.ID]; ok && prev != out {
			t.Errorf("registration %s answered %v and %v", out.ID, prev, out)
		}
		told[out.ID] = out
	}
	var first []byte
	for ni, nd := range nodes {
		name := nd.Name()
		l := nd.Ledger()
		_, st, ok := l.Campaign("faults")
		if !ok {
			t.Fatalf("%s: campaign missing", name)
		}
		// I1: the budget, from the counters and from the decisions.
		if st.BudgetSpent > sp.Budget {
			t.Errorf("%s: I1: spent %d > budget %d", name, st.BudgetSpent, sp.Budget)
		}
		// I2: per-inviter caps.
		var progressValue int64
		for _, inv := range sp.Inviters {
			p, _ := l.Progress("faults", inv)
			if p.Rewarded > int64(sp.Cap) {
				t.Errorf("%s: I2: %s rewarded %d times > cap %d", name, inv, p.Rewarded, sp.Cap)
			}
			progressValue += p.Value
		}
		// I3: at most one attribution per invitee; the attributed count is
		// what the stats count as rewarded, capped and held.
		attributed := int64(0)
		var granted int64
		rewardedBy := map[string]int64{}
		for inv := range invitees {
			d, ok := l.RegistrationFor("faults", inv)
			if !ok {
				continue
			}
			attributed++
			if d.Invitee != inv || d.Status == ledger.StatusDup {
				t.Errorf("%s: I3: %s is attributed to %+v", name, inv, d)
			}
			for _, g := range d.Grants {
				granted += g.Value
			}
			if d.Status == ledger.StatusRewarded {
				rewardedBy[d.Inviter]++
			}
		}
		if got := st.Rewarded + st.Capped + st.Held; got != attributed {
			t.Errorf("%s: I3: %d registrations attributed (rewarded %d, capped %d, held %d) for %d attributed invitees",
				name, got, st.Rewarded, st.Capped, st.Held, attributed)
		}
		if granted != st.BudgetSpent || granted > sp.Budget {
			t.Errorf("%s: I1: grants of the attributed registrations sum to %d, stats say %d, budget %d", name, granted, st.BudgetSpent, sp.Budget)
		}
		for inv, c := range rewardedBy {
			if c > int64(sp.Cap) {
				t.Errorf("%s: I2: %d rewarded registrations for %s > cap %d", name, c, inv, sp.Cap)
			}
		}
		if progressValue != st.BudgetSpent-sp.InviteeValue*st.Rewarded {
			t.Errorf("%s: inviters' value %d, want %d", name, progressValue, st.BudgetSpent-sp.InviteeValue*st.Rewarded)
		}
		// I4: every acknowledged registration has its decision here, as told.
		for id, out := range told {
			d, ok := l.Registration(id)
			if !ok {
				t.Errorf("%s: I4: acknowledged registration %s (%v) is missing", name, id, out)
				continue
			}
			in := regInput{Invitee: d.Invitee}
			if got := outputOf(in, apiDecision{ID: d.ID, Status: d.Status, Reason: d.Reason, Inviter: d.Inviter, Invitee: d.Invitee, Grants: d.Grants}); got != out {
				t.Errorf("%s: I4: registration %s is %v here, the client was told %v", name, id, got, out)
			}
			if d.Status == ledger.StatusDup {
				w, ok := l.RegistrationFor("faults", d.Invitee)
				if !ok || w.ID != d.DuplicateOf || w.ID == d.ID {
					t.Errorf("%s: duplicate %s names %s, the invitee's registration is %s", name, id, d.DuplicateOf, w.ID)
				}
			}
		}
		if unknown == 0 && st.Registrations != int64(len(told)) {
			t.Errorf("%s: I4: %d registrations in the ledger, %d acknowledged", name, st.Registrations, len(told))
		} else if st.Registrations < int64(len(told)) {
			t.Errorf("%s: I4: %d registrations in the ledger < %d acknowledged", name, st.Registrations, len(told))
		}
		// Replicas are byte-identical.
		var buf bytes.Buffer
		if err := l.Snapshot(&buf); err != nil {
			t.Fatalf("%s: snapshot: %v", name, err)
		}
		if ni == 0 {
			first = buf.Bytes()
			t.Logf("replica state: %d registrations, %d rewarded, %d capped, %d duplicates, spent %d of %d",
				st.Registrations, st.Rewarded, st.Capped, st.Duplicates, st.BudgetSpent, sp.Budget)
		} else if !bytes.Equal(first, buf.Bytes()) {
			t.Errorf("%s: replica differs from %s", name, nodes[0].Name())
		}
	}
	// The same decision on every replica, field by field.
	for id := range told {
		d0, _ := nodes[0].Ledger().Registration(id)
		for _, nd := range nodes[1:] {
			if d, _ := nd.Ledger().Registration(id); !reflect.DeepEqual(d, d0) {
				t.Errorf("I4: registration %s is %+v on %s and %+v on %s", id, d0, nodes[0].Name(), d, nd.Name())
			}
		}
	}
}

// checkOutbox opens the outbox of a stopped node and checks that each
// registration it acknowledged (a 202 still pending for the client) that the
// ledger has not decided lies at or after the submitter cursor, from which
// the node resubmits on restart.
func checkOutbox(t *testing.T, dataDir string, lg *ledger.Ledger, h *history, victim int) {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Dir: filepath.Join(dataDir, "outbox"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open the stopped node's outbox: %v", err)
	}
	defer ob.Close()
	cursor := ob.Cursor("submitter")
	seqOf := map[string]uint64{}
	decided := map[string]bool{}
	for from := uint64(0); ; {
		recs, err := ob.Read(from, 1024)
		if err != nil {
			t.Fatalf("read the stopped node's outbox: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			switch r.Event.Kind {
			case attribution.KindRegistration:
				seqOf[r.Event.ID] = r.Seq
			case attribution.KindDecision:
				decided[r.Event.Registration] = true
			}
		}
		from = recs[len(recs)-1].Seq + 1
	}
	waiting := 0
	for _, d := range h.deferred {
		if d.node != victim {
			continue
		}
		seq, ok := seqOf[d.id]
		if !ok {
			t.Errorf("I4: registration %s acknowledged by the stopped node is not in its outbox", d.id)
			continue
		}
		if _, done := lg.Registration(d.id); done || decided[d.id] {
			continue
		}
		waiting++
		if seq < cursor {
			t.Errorf("I4: registration %s acknowledged by the stopped node, undecided, is at outbox seq %d below the submitter cursor %d: a restart never submits it",
				d.id, seq, cursor)
		}
	}
	t.Logf("stopped node's outbox: %d registrations, submitter cursor %d, %d acknowledged and undecided", len(seqOf), cursor, waiting)
}

// restartVictim checks the stopped node's outbox, then restarts the node from
// its data dir in place of the stopped one.
func restartVictim(ctx context.Context, t *testing.T, lc *localcluster.Cluster, victim int, platform *httpAPI, h *history) {
	t.Helper()
	// Before the restart, look into the stopped node's outbox: every
	// registration it acknowledged and the ledger has not decided must be at
	// or after the submitter cursor, or the restart never submits it (I4).
	checkOutbox(t, lc.Configs[victim].DataDir, lc.Nodes[(victim+1)%len(lc.Nodes)].Ledger(), h, victim)

	// Node.Shutdown with an expired context leaves fasthttp serving the
	// keep-alive connections it had (ShutdownWithContext gives up waiting
	// and resets its stop flag): a stopped node that still answers, from a
	// frozen replica, on old connections. Talk to the restarted node on new
	// connections only.
	platform.renew(strings.TrimPrefix(lc.Configs[victim].PublicURL, "http://"))

	// Restart the stopped node from its data dir: its outbox holds the
	// registrations it acknowledged and did not see decided (I4).
	t0 := time.Now()
	restarted, err := node.New(lc.Configs[victim], node.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("restart %s: %v", lc.Configs[victim].Name, err)
	}
	if err := restarted.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", lc.Configs[victim].Name, err)
	}
	lc.Nodes[victim] = restarted // shut down by StartCluster's cleanup
	if err := restarted.WaitReady(ctx); err != nil {
		t.Fatalf("restart %s: %v", lc.Configs[victim].Name, err)
	}
	t.Logf("%s restarted and ready in %v", lc.Configs[victim].Name, time.Since(t0).Round(time.Millisecond))
}
