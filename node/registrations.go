package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
	"github.com/valyala/fasthttp"
)

// cursorSubmitter names the outbox cursor below which every registration of
// this node has been decided by the ledger and its decision recorded.
const cursorSubmitter = "submitter"

// maxWait bounds ?wait= on registrations.
const maxWait = 30 * time.Second

// newID returns a new ULID for an event or registration made at t.
func newID(t time.Time) string {
	return ulid.MustNew(ulid.Timestamp(t), ulid.DefaultEntropy()).String()
}

// pendingReg is a registration this node acknowledged and the ledger has not
// yet decided (as seen by the local replica).
type pendingReg struct {
	id    string
	key   string // campaign + "\x00" + invitee
	seq   uint64 // outbox sequence of its registration event
	ev    attribution.Event
	cmd   []byte        // encoded ledger command
	done  chan struct{} // closed once decided on the local replica
	owned bool          // this node holds it in its outbox (vs. only waited on)

	// recorded is closed once the registration event is durable in the
	// outbox, or its append failed (recErr, written before the close). A
	// retry that finds the entry waits on it before answering, so no
	// caller is acknowledged before the record is on disk (I4).
	recorded chan struct{}
	recErr   error

	// decided is closed once the decision is known here: from the leader's
	// answer to the submission (one round trip earlier than the local
	// replica learns the commit) or from the local replica, whichever is
	// first. dec is written before, under registry.mu.
	decided chan struct{}
	hasDec  bool
	dec     ledger.Decision
}

// newPending returns the pending entry of a registration event whose
// append to the outbox is still to come (close recorded once it is done).
func newPending(ev attribution.Event, key string) *pendingReg {
	return &pendingReg{id: ev.ID, key: key, ev: ev, done: make(chan struct{}), decided: make(chan struct{}),
		recorded: make(chan struct{}), owned: true}
}

// recordedPending returns the pending entry of a registration event already
// durable in the outbox (replayed at start).
func recordedPending(ev attribution.Event, key string) *pendingReg {
	p := newPending(ev, key)
	close(p.recorded)
	return p
}

// settleLocked records d as p's decision if p has none yet. r.mu must be held.
func (p *pendingReg) settleLocked(d ledger.Decision) {
	if !p.hasDec {
		p.dec, p.hasDec = d, true
		close(p.decided)
	}
}

// registry tracks the pending registrations owned by this node, the
// submission queue and the decisions waiting to be written to the outbox.
type registry struct {
	mu      sync.Mutex
	byID    map[string]*pendingReg
	byKey   map[string]*pendingReg
	queue   []*pendingReg // to submit
	decided []*pendingReg // decided, decision events not yet in the outbox
	// shared are decisions no single node owns (a review's, a
	// settlement's), not yet in the outbox: every node records them, and
	// their event ids make the copies one row in the database.
	shared []ledger.Decision
	wake   chan struct{}
}

func newRegistry() *registry {
	return &registry{byID: map[string]*pendingReg{}, byKey: map[string]*pendingReg{}, wake: make(chan struct{}, 1)}
}

func (r *registry) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *registry) pendingCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

// regRequest is the body of POST /v1/registrations (API.md).
type regRequest struct {
	Campaign string `json:"campaign"`
	Click    string `json:"click,omitempty"`
	Code     string `json:"code,omitempty"`
	Invitee  string `json:"invitee"`
	Device   string `json:"device,omitempty"`
	// IP is the viewer's address as the platform's backend saw it. Without
	// it the registration is the caller's: right for a viewer's app, wrong
	// for a backend, whose one address would trip the per-IP velocity
	// check and give every registration the backend's country.
	IP string `json:"ip,omitempty"`
}

// regView is the API shape of a registration.
type regView struct {
	ID       string         `json:"id"`
	Status   string         `json:"status"`
	Reason   string         `json:"reason,omitempty"`
	Campaign string         `json:"campaign,omitempty"`
	Inviter  string         `json:"inviter,omitempty"`
	Invitee  string         `json:"invitee,omitempty"`
	Grants   []ledger.Grant `json:"grants"`
}

func viewOf(d ledger.Decision) regView {
	v := regView{ID: d.ID, Status: d.Status, Reason: d.Reason, Campaign: d.Campaign, Inviter: d.Inviter, Invitee: d.Invitee, Grants: d.Grants}
	if v.Grants == nil {
		v.Grants = []ledger.Grant{}
	}
	return v
}

func pendingView(p *pendingReg) regView {
	return regView{ID: p.id, Status: "pending", Campaign: p.ev.Campaign, Inviter: p.ev.Inviter, Invitee: p.ev.Invitee, Grants: []ledger.Grant{}}
}

func checkID(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return invalid("%s is required", field)
	case len(v) > 128:
		return invalid("%s is longer than 128 bytes", field)
	case !utf8.ValidString(v):
		return invalid("%s is not valid UTF-8", field)
	case strings.ContainsFunc(v, isControl):
		return invalid("%s contains control characters", field)
	}
	return nil
}

// isControl reports C0 control characters, DEL and the C1 controls.
func isControl(r rune) bool { return r < 0x20 || 0x7f <= r && r < 0xa0 }

// register handles POST /v1/registrations: validate, record durably (fsync
// before the answer), submit to the ledger, answer 202 (or 200 with the
// decision when ?wait= sees it).
func (n *Node) register(ctx *fasthttp.RequestCtx) error {
	ip := n.clientIPCtx(ctx)
	pt := n.locate(ip)
	if target, ok := n.farTarget(hopped(ctx), &pt); ok {
		// 307 keeps the method and body: the client posts the same
		// registration to the nearer node.
		ctx.Response.Header.Set("Location", target+"/v1/registrations?"+hopQuery(ctx))
		ctx.SetStatusCode(fasthttp.StatusTemporaryRedirect)
		return nil
	}
	var req regRequest
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	wait, err := waitParam(ctx)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		req     bool
	}{{"campaign", req.Campaign, true}, {"invitee", req.Invitee, true}, {"device", req.Device, false}} {
		if err := checkID(f.name, f.v, f.req); err != nil {
			return err
		}
	}
	if (req.Click == "") == (req.Code == "") {
		return invalid("exactly one of click and code is required")
	}
	if req.IP != "" {
		a, err := netip.ParseAddr(req.IP)
		if err != nil || a.Zone() != "" {
			return invalid("ip %q is not an IP address", req.IP)
		}
		ip = a.Unmap()
		pt = n.locate(ip)
	}
	camp, err := n.campaign(req.Campaign)
	if err != nil {
		return err
	}
	now := n.now()
	var code links.Code
	var clickAt time.Time
	var codeStr string
	if req.Click != "" {
		click, err := n.keys.Load().VerifyClick([]byte(req.Click), now)
		if err != nil {
			return invalid("click token rejected: %v", err)
		}
		code, clickAt = click.Code, click.At
		cb, err := n.keys.Load().AppendCode(nil, code)
		if err != nil {
			return invalid("click token rejected: %v", err)
		}
		codeStr = string(cb)
	} else {
		code, err = n.keys.Load().Verify([]byte(req.Code), now)
		if err != nil {
			return invalid("code rejected: %v", err)
		}
		codeStr = req.Code
	}
	if code.Campaign != camp.Number {
		return invalid("the click or code belongs to another campaign")
	}
	inviter, err := n.inviterName(code)
	if err != nil {
		return err
	}

	// Idempotency: the ledger's decision, else this node's pending entry.
	if d, ok := n.ledger.RegistrationFor(req.Campaign, req.Invitee); ok {
		n.metrics.registrations.WithLabelValues("replayed").Inc()
		return n.writeJSON(ctx, fasthttp.StatusOK, viewOf(d))
	}
	key := req.Campaign + "\x00" + req.Invitee
	p, fresh, err := n.acknowledge(key, attribution.Event{
		Kind: attribution.KindRegistration, At: now.UTC(), Node: n.cfg.Name, Region: n.cfg.Region,
		Campaign: req.Campaign, Code: codeStr, Inviter: inviter, Invitee: req.Invitee, Device: req.Device,
		IP: ip.String(), Country: country(&pt), ClickAt: clickAt.UTC(),
	})
	if err != nil {
		return err
	}
	if fresh {
		n.metrics.registrations.WithLabelValues("accepted").Inc()
	} else {
		n.metrics.registrations.WithLabelValues("replayed").Inc()
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-p.decided:
			return n.writeJSON(ctx, fasthttp.StatusOK, viewOf(p.dec))
		case <-t.C:
		}
	}
	select {
	case <-p.decided:
		return n.writeJSON(ctx, fasthttp.StatusOK, viewOf(p.dec))
	default:
	}
	return n.writeJSON(ctx, fasthttp.StatusAccepted, map[string]string{"id": p.id, "status": "pending"})
}

// inviterName resolves a verified code's inviter from the local replica. A
// link issued a moment ago through another node may not have reached this
// replica yet: then a read barrier through the log catches it up once.
func (n *Node) inviterName(code links.Code) (string, error) {
	if name, ok := n.ledger.InviterName(code.Campaign, code.Inviter); ok {
		return name, nil
	}
	if err := n.readBarrier(); err != nil {
		return "", err
	}
	if name, ok := n.ledger.InviterName(code.Campaign, code.Inviter); ok {
		return name, nil
	}
	return "", invalid("the code's inviter is unknown to the ledger")
}

// notReady is the answer of a node whose replica has not caught up yet: a
// retryable 503 rather than a final 404 for a campaign it does not know yet.
func notReady() error {
	return unavailable("node starting: the local replica is catching up; retry")
}

func waitParam(ctx *fasthttp.RequestCtx) (time.Duration, error) {
	w := ctx.QueryArgs().Peek("wait")
	if len(w) == 0 {
		return 0, nil
	}
	d, err := time.ParseDuration(string(w))
	if err != nil || d < 0 {
		return 0, invalid("wait %q is not a duration like 2s", w)
	}
	if d > maxWait {
		return 0, invalid("wait %s is longer than %s", d, maxWait)
	}
	return d, nil
}

// acknowledge records a registration durably unless one for the same key is
// already pending here; it returns the pending entry and whether it is new.
// The registration is in the outbox (fsynced) before this returns.
func (n *Node) acknowledge(key string, ev attribution.Event) (*pendingReg, bool, error) {
	r := n.regs
	r.mu.Lock()
	if p, ok := r.byKey[key]; ok {
		r.mu.Unlock()
		<-p.recorded // bounded by the first caller's append timeout
		if p.recErr != nil {
			return nil, false, unavailable("could not record the registration durably: %v", p.recErr)
		}
		return p, false, nil
	}
	ev.ID = newID(ev.At)
	ev.Registration = ev.ID
	p := newPending(ev, key)
	r.byKey[key] = p
	r.byID[p.id] = p
	r.mu.Unlock()

	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	seq, err := n.outbox.Append(actx, true, ev)
	cancel()
	if err != nil {
		r.mu.Lock()
		delete(r.byKey, key)
		delete(r.byID, p.id)
		r.mu.Unlock()
		p.recErr = err
		close(p.recorded)
		close(p.done) // nobody decided; waiters see pending and the entry is gone
		n.metrics.registrations.WithLabelValues("failed").Inc()
		return nil, false, unavailable("could not record the registration durably: %v", err)
	}
	close(p.recorded)
	n.enqueue(p, seq)
	return p, true, nil
}

// enqueue queues p for submission to the ledger.
func (n *Node) enqueue(p *pendingReg, seq uint64) {
	r := n.regs
	cmd := n.registerCommand(&p.ev)
	r.mu.Lock()
	p.seq, p.cmd = seq, cmd
	r.queue = append(r.queue, p)
	r.mu.Unlock()
	r.notify()
}

// registerCommand encodes the ledger command for a registration event.
func (n *Node) registerCommand(ev *attribution.Event) []byte {
	code, _ := links.Peek([]byte(ev.Code))
	return ledger.EncodeRegister(ledger.Register{
		ID:            ev.ID,
		Campaign:      ev.Campaign,
		InviterNumber: code.Inviter,
		Invitee:       ev.Invitee,
		Device:        ev.Device,
		IP:            ev.IP,
		ClickAt:       ev.ClickAt,
		AckAt:         ev.At,
		Node:          ev.Node,
	})
}

// getRegistration handles GET /v1/registrations/{id}: the local replica's
// decision, or pending when this node holds it undecided.
func (n *Node) getRegistration(ctx *fasthttp.RequestCtx, id string) error {
	if d, ok := n.ledger.Registration(id); ok {
		return n.writeJSON(ctx, fasthttp.StatusOK, viewOf(d))
	}
	n.regs.mu.Lock()
	p, ok := n.regs.byID[id]
	var view regView
	if ok {
		view = pendingView(p)
		if p.hasDec {
			view = viewOf(p.dec)
		}
	}
	n.regs.mu.Unlock()
	if ok {
		return n.writeJSON(ctx, fasthttp.StatusOK, view)
	}
	if !n.ready.Load() {
		return notReady()
	}
	return notFound("registration %q not found on this node", id)
}

// onDecision is the ledger's observer, called inside the replica's apply for
// every new decision. It must not block: it settles the local pending entry
// and queues the decision's events for the outbox.
func (n *Node) onDecision(d ledger.Decision) {
	n.metrics.decisions.WithLabelValues(d.Status).Inc()
	r := n.regs
	r.mu.Lock()
	p, ok := r.byID[d.ID]
	if ok {
		delete(r.byID, d.ID)
		if r.byKey[p.key] == p {
			delete(r.byKey, p.key)
		}
		p.settleLocked(d) // no-op when the leader's answer came first: it is the same decision
		if p.owned {
			r.decided = append(r.decided, p)
		}
	}
	shared := !ok && (d.Review || strings.HasPrefix(d.ID, ledger.SettlementPrefix))
	if shared {
		r.shared = append(r.shared, d)
	}
	r.mu.Unlock()
	if ok {
		close(p.done)
	}
	if ok || shared {
		r.notify()
	}
}

// submitLoop submits queued registrations to the ledger through the cluster
// (which batches and forwards them to the leader), retrying until each is
// decided, and writes decision and grant events of this node's registrations
// to the outbox. At most maxInflight submissions run at once; every goroutine
// it starts ends before it returns.
func (n *Node) submitLoop(ctx context.Context) {
	const maxInflight = 512
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			n.flushDecisions()
			return
		case <-n.regs.wake:
		case <-tick.C:
		}
		n.flushDecisions()
		if !n.ready.Load() {
			continue
		}
		r := n.regs
		r.mu.Lock()
		q := r.queue
		r.queue = nil
		r.mu.Unlock()
		for _, p := range q {
			select {
			case <-p.done:
				continue
			default:
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func(p *pendingReg) {
				defer wg.Done()
				defer func() { <-sem }()
				n.submit(ctx, p)
			}(p)
		}
	}
}

// submit applies one registration, retrying with backoff across leadership
// changes and partitions until the local replica has its decision or ctx ends.
// The ledger is idempotent by registration id, so retries decide once.
func (n *Node) submit(ctx context.Context, p *pendingReg) {
	backoff := 100 * time.Millisecond
	n.regs.mu.Lock()
	cmd := p.cmd
	n.regs.mu.Unlock()
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := n.cluster.Apply(actx, cmd)
		cancel()
		if err == nil {
			// Decided on the leader: answer waiters now, and wait for the
			// local replica to apply it too (that settles the entry).
			if d, derr := ledger.DecodeDecision(res); derr == nil && d.ID == p.id {
				n.regs.mu.Lock()
				p.settleLocked(d)
				n.regs.mu.Unlock()
			}
			select {
			case <-p.done:
				return
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
		} else if !errors.Is(err, context.Canceled) {
			n.log.Debug("submit registration", "id", p.id, "err", err)
		}
		select {
		case <-p.done:
			return
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// flushDecisions appends the decision and grant events of decided
// registrations to the outbox and advances the submitter cursor past every
// registration that is settled. Event ids derive from the registration id so
// that writing them again after a crash is a no-op in the database.
func (n *Node) flushDecisions() {
	r := n.regs
	r.mu.Lock()
	decided, shared := r.decided, r.shared
	r.decided, r.shared = nil, nil
	r.mu.Unlock()
	if len(decided)+len(shared) > 0 {
		var evs []attribution.Event
		for _, p := range decided {
			evs = append(evs, decisionEvents(n.cfg.Name, n.cfg.Region, p.dec)...)
		}
		for _, d := range shared {
			evs = append(evs, decisionEvents(n.cfg.Name, n.cfg.Region, d)...)
		}
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := n.outbox.Append(actx, true, evs...)
		cancel()
		if err != nil {
			n.log.Error("record decisions", "err", err)
			r.mu.Lock()
			r.decided = append(decided, r.decided...)
			r.shared = append(shared, r.shared...)
			r.mu.Unlock()
			return
		}
	}
	n.commitSubmitterCursor()
}

// commitSubmitterCursor moves the submitter cursor to the oldest registration
// still pending here (or past the end when none is).
func (n *Node) commitSubmitterCursor() {
	r := n.regs
	r.mu.Lock()
	low := n.outbox.LastSeq() + 1
	for _, p := range r.byID {
		if p.owned && p.seq == 0 {
			// Its append is in flight: its sequence is not known yet and
			// may be below low. Try again at the next tick.
			r.mu.Unlock()
			return
		}
		if p.owned && p.seq < low {
			low = p.seq
		}
	}
	for _, p := range r.decided {
		if p.seq < low {
			low = p.seq
		}
	}
	r.mu.Unlock()
	if low > n.outbox.Cursor(cursorSubmitter) {
		if err := n.outbox.Commit(cursorSubmitter, low); err != nil {
			n.log.Error("commit submitter cursor", "err", err)
		}
	}
}

// decisionEvents returns the outbox events of a decision: one decision event
// and one event per grant, with ids derived from the registration id and the
// raft index of the decision (a held registration released later gets a
// second decision, kept beside the first as an audit trail).
func decisionEvents(node, region string, d ledger.Decision) []attribution.Event {
	at := d.DecidedAt.UTC()
	evs := []attribution.Event{{
		ID: fmt.Sprintf("d-%s-%d", d.ID, d.Index), Kind: attribution.KindDecision, At: at, Node: node, Region: region,
		Campaign: d.Campaign, Inviter: d.Inviter, Invitee: d.Invitee, Registration: d.ID,
		Status: d.Status, Reason: d.Reason,
	}}
	for i, g := range d.Grants {
		evs = append(evs, attribution.Event{
			ID: fmt.Sprintf("g-%s-%d-%d", d.ID, d.Index, i), Kind: attribution.KindGrant, At: at, Node: node, Region: region,
			Campaign: d.Campaign, Inviter: d.Inviter, Invitee: d.Invitee, Registration: d.ID,
			User: g.User, Role: g.Role, Value: g.Value,
		})
	}
	return evs
}

// loadPending rebuilds the pending set from the outbox after a restart: every
// registration at or after the submitter cursor that the local replica has
// not decided is pending again. It runs before the HTTP listener opens, so a
// registration acknowledged before a crash is visible at once (I4).
func (n *Node) loadPending() error {
	from := n.outbox.Cursor(cursorSubmitter)
	decisions := map[string]bool{}
	var regs []attribution.Event
	var seqs []uint64
	for {
		recs, err := n.outbox.Read(from, 1024)
		if errors.Is(err, outbox.ErrBelowFirst) {
			first := n.outbox.FirstSeq()
			n.log.Error("outbox records below the submitter cursor are gone (deleted or lost); replaying from the oldest kept record",
				"cursor", from, "first_kept", first)
			from = first
			continue
		}
		if err != nil {
			return fmt.Errorf("replay outbox: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			switch rec.Event.Kind {
			case attribution.KindRegistration:
				regs = append(regs, rec.Event)
				seqs = append(seqs, rec.Seq)
			case attribution.KindDecision:
				decisions[rec.Event.Registration] = true
			}
		}
		from = recs[len(recs)-1].Seq + 1
	}
	r := n.regs
	for i, ev := range regs {
		p := recordedPending(ev, ev.Campaign+"\x00"+ev.Invitee)
		p.seq = seqs[i]
		if decisions[ev.ID] {
			continue
		}
		r.mu.Lock()
		r.byID[p.id] = p
		r.byKey[p.key] = p
		r.mu.Unlock()
		n.enqueue(p, seqs[i])
	}
	if len(regs) > 0 {
		n.log.Info("outbox replayed", "registrations", len(regs), "undecided_or_unrecorded", len(n.regs.byID))
	}
	return nil
}

// resumePending runs once the replica has caught up: registrations the
// ledger already decided before a crash get their decision events recorded.
func (n *Node) resumePending(ctx context.Context) {
	r := n.regs
	r.mu.Lock()
	var settled []*pendingReg
	for id, p := range r.byID {
		if d, ok := n.ledger.Registration(id); ok {
			p.settleLocked(d)
			settled = append(settled, p)
			delete(r.byID, id)
			if r.byKey[p.key] == p {
				delete(r.byKey, p.key)
			}
		}
	}
	sort.Slice(settled, func(i, j int) bool { return settled[i].seq < settled[j].seq })
	r.decided = append(r.decided, settled...)
	r.mu.Unlock()
	for _, p := range settled {
		close(p.done)
	}
	r.notify()
}

// review handles POST /v1/registrations/{id}/review {"action": "release"|"reject"} (admin).
func (n *Node) review(ctx *fasthttp.RequestCtx, id string) error {
	var req struct {
		Action string `json:"action"`
	}
	if err := decodeJSON(ctx, &req); err != nil {
		return err
	}
	if req.Action != "release" && req.Action != "reject" {
		return invalid("action must be release or reject, not %q", req.Action)
	}
	d, ok := n.ledger.Registration(id)
	if !ok {
		return notFound("registration %q not found", id)
	}
	if d.Status != "held" {
		return errf(fasthttp.StatusConflict, codeConflict, "registration %q is %s, not held", id, d.Status)
	}
	rctx, cancel := n.requestContext()
	defer cancel()
	res, err := n.applyAndWait(rctx, ledger.EncodeReview(ledger.Review{RegistrationID: id, Action: req.Action}))
	if err != nil {
		return unavailable("ledger: %v", err)
	}
	dec, err := ledger.DecodeDecision(res)
	if err != nil {
		return ledgerError(err)
	}
	// Every node's observer records the review's decision and grants in its
	// outbox (onDecision), this one included.
	return n.writeJSON(ctx, fasthttp.StatusOK, viewOf(dec))
}
