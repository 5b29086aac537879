package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Ledger is the reward ledger state machine. ApplyBatch, Snapshot and Restore
// are driven by one goroutine of the cluster (Snapshot may also run from raft's
// snapshot goroutine); the read methods may be called from any number of
// goroutines at the same time. Campaigns() is lock-free.
type Ledger struct {
	mu       sync.RWMutex
	st       *state
	observer func(Decision)
	table    atomic.Pointer[Table]
}

// state is everything the snapshot holds. Guarded by Ledger.mu.
// RulesLevel is the newest rules level this build applies. Level 0 is the
// rules of builds before levels existed; level 1 adds: the per-inviter daily
// cap's day only moves forward; a late release after settlement leaves team
// totals and lottery entries alone; a campaign replacement remaps done tasks
// by name and is refused when it reorders variants or reopens a settled
// campaign. A ledger starts at level 0 and moves up only through a
// CmdSetRules entry, so that replicas replaying old entries, and older
// builds during a rolling upgrade, decide every entry alike.
const RulesLevel = 1

type state struct {
	rules    uint8        // the rules level in force (see RulesLevel)
	camps    []*campState // index number-1
	campIdx  map[string]uint16
	names    arena
	regs     []reg
	regIdx   hindex            // registration id -> position in regs
	regStr   map[uint32]string // ids that are not canonical ULIDs
	regCamp  map[uint32]string // campaign ids of registrations for unknown campaigns
	regDup   map[uint32]uint32 // duplicate registration -> the first registration
	regExtra map[uint32][]Grant
	segs     map[segKey][]string
	seq      uint64 // commands applied so far
	index    uint64 // last raft index applied
	nextEnd  int64  // earliest ends_at (unix ns) of an unsettled campaign

	notes []Decision // decisions to hand to the observer after the batch
	watch bool       // an observer is set: collect notes
}

type segKey struct{ campaign, inviter string }

type campState struct {
	//lint:ignore U1000 read by the invariants build's checkInvariants
	chk      invCheck // invariants build only: use allowed above lowered limits
	c        *Campaign
	canon    []byte
	fraud    Fraud
	inviters []inviter // index number-1
	invIdx   hindex    // inviter name -> position
	invitees hindex    // invitee name -> position in state.regs (attributed registrations)
	ipVel    wtable
	devVel   wtable
	ipSwept  int64
	devSwept int64
	teams    []team
	lottery  []uint32 // inviter numbers, in the order they reached lottery.after
	st       counters
	variants []varCounters
	settled  *Settlement
}

type counters struct {
	links, regs, rewarded, dups, capped, held, rejected, spent int64
}

type varCounters struct {
	links, regs, rewarded, value int64
}

type team struct {
	name    string
	total   int64
	reached uint64 // state.seq when total was reached
	members int64
}

// inviter is one inviter of one campaign (48 bytes).
type inviter struct {
	name      sref
	value     int64 // total value granted to the inviter
	vel       window
	firstLink uint32 // unix seconds of the first link; 0 none
	invites   uint32 // successful invites (rewarded or capped)
	rewarded  uint32
	day       uint16 // UTC day (since 1970) of dayCount
	dayCount  uint16
	team      uint16 // 1-based team index; 0 none
	variant   uint8  // 1-based variant; 0 none
	tasks     uint8  // bit i: task i done
	flags     uint8
}

const flagLottery = 1

// reg is one registration (64 bytes). An id that is not a canonical ULID is
// kept in state.regStr (id stays zero); a duplicate's first registration in
// state.regDup.
type reg struct {
	id       [16]byte
	invitee  sref
	at       int64 // decided at, unix ns
	index    uint64
	invVal   int64
	inveeVal int64
	inviter  uint32 // inviter number; 0 unknown
	camp     uint16 // campaign number; 0 unknown
	status   uint8
	reason   uint8
}

const regStrID = 1 // snapshot flag: the id is a string

// Reasons.
const (
	rsNone uint8 = iota
	rsNotRunning
	rsUnknownInviter
	rsExpired
	rsSelf
	rsSegment
	rsReview
	rsTooFast
	rsVelInviter
	rsVelIP
	rsVelDevice
	rsBudget
	rsBudgetCount
	rsInviterCap
	rsDailyCap
	rsCount
)

var reasonNames = [rsCount]string{"", "campaign_not_running", "unknown_inviter", "attribution_expired", "self_invite", "segment", "review", "too_fast", "velocity_inviter", "velocity_ip", "velocity_device", "budget", "budget_count", "inviter_cap", "daily_cap"} //nolint:gochecknoglobals // read-only

func newState() *state {
	return &state{
		campIdx:  map[string]uint16{},
		regStr:   map[uint32]string{},
		regCamp:  map[uint32]string{},
		regDup:   map[uint32]uint32{},
		regExtra: map[uint32][]Grant{},
		segs:     map[segKey][]string{},
		nextEnd:  math.MaxInt64,
	}
}

// New returns an empty ledger.
func New() *Ledger {
	l := &Ledger{st: newState()}
	l.table.Store(&Table{byID: map[string]*Campaign{}})
	return l
}

// SetObserver sets fn to be called, synchronously at the end of ApplyBatch
// (after the lock is released, in log order), with every new or changed
// decision: registrations, reviews and settlements. fn must not block; it may
// call the read methods. Set it before the first ApplyBatch.
func (l *Ledger) SetObserver(fn func(Decision)) {
	l.mu.Lock()
	l.observer = fn
	l.mu.Unlock()
}

// ApplyBatch applies the commands of the raft entry at index, stamped at by
// the leader, in order, and returns one result per command (decode them with
// DecodeResult). A malformed or refused command yields an error result and
// changes nothing. Before the commands, every campaign whose ends_at is at or
// before at is settled (once). Not for concurrent use with itself or Restore.
func (l *Ledger) ApplyBatch(index uint64, at time.Time, cmds [][]byte) [][]byte {
	out := make([][]byte, len(cmds))
	l.mu.Lock()
	s := l.st
	s.watch = l.observer != nil
	s.index = index
	at = at.UTC()
	atN := at.UnixNano()
	changed := false
	if atN >= s.nextEnd {
		s.settleDue(index, at)
	}
	order := s.batchOrder(cmds)
	for i := range cmds {
		if order != nil {
			i = order[i]
		}
		s.seq++
		out[i] = s.apply(cmds[i], index, at, &changed)
		if CommandType(out[i][1]) == resError {
			s.seq-- // a refused command leaves no trace
		}
	}
	if changed {
		l.publishLocked()
	}
	s.checkInvariants()
	obs, notes := l.observer, s.notes
	s.notes = nil
	l.mu.Unlock()
	for _, d := range notes {
		obs(d)
	}
	return out
}

func (l *Ledger) publishLocked() {
	s := l.st
	t := &Table{byNumber: make([]*Campaign, len(s.camps)), byID: make(map[string]*Campaign, len(s.camps))}
	for i, cs := range s.camps {
		t.byNumber[i] = cs.c
		t.byID[cs.c.ID] = cs.c
	}
	l.table.Store(t)
}

func malformed(t CommandType, err error) []byte {
	return encodeError(fmt.Errorf("%w: %s: %w", ErrMalformed, t, err))
}

func (s *state) apply(cmd []byte, index uint64, at time.Time, changed *bool) []byte {
	if len(cmd) < 2 || cmd[0] != wireVersion {
		return encodeError(fmt.Errorf("%w: bad header", ErrMalformed))
	}
	t, body := CommandType(cmd[1]), cmd[2:]
	switch t {
	case CmdNoop:
		if len(body) != 0 {
			return malformed(t, errors.New("trailing bytes"))
		}
		return encodeEmpty(CmdNoop)
	case CmdPutCampaign:
		return s.putCampaign(body, changed)
	case CmdIssueLink:
		v, err := decodeIssueLink(body)
		if err != nil {
			return malformed(t, err)
		}
		return s.issueLink(v, at)
	case CmdRegister:
		v, err := decodeRegister(body)
		if err != nil {
			return malformed(t, err)
		}
		return s.register(v, index, at)
	case CmdReview:
		v, err := decodeReview(body)
		if err != nil {
			return malformed(t, err)
		}
		return s.review(v, index, at)
	case CmdSetSegments:
		v, err := decodeSetSegments(body)
		if err != nil {
			return malformed(t, err)
		}
		return s.setSegments(v)
	case CmdJoinTeam:
		v, err := decodeJoinTeam(body)
		if err != nil {
			return malformed(t, err)
		}
		return s.joinTeam(v)
	case CmdSetRules:
		if len(body) != 1 {
			return malformed(t, errors.New("want one byte"))
		}
		if body[0] > RulesLevel {
			return encodeError(fmt.Errorf("%w: rules level %d (this build knows up to %d)", ErrUnknownCommand, body[0], RulesLevel))
		}
		s.rules = max(s.rules, body[0])
		return encodeEmpty(CmdSetRules)
	}
	return encodeError(fmt.Errorf("%w: type %d", ErrUnknownCommand, uint8(t)))
}

func (s *state) campaign(id string) *campState {
	n, ok := s.campIdx[id]
	if !ok {
		return nil
	}
	return s.camps[n-1]
}

func (s *state) putCampaign(body []byte, changed *bool) []byte {
	c, err := ParseCampaign(body)
	if err != nil {
		return encodeError(err)
	}
	canon := c.canonical()
	if cs := s.campaign(c.ID); cs != nil {
		if bytes.Equal(canon, cs.canon) {
			return encodePut(PutResult{ID: c.ID, Number: cs.c.Number, Version: cs.c.Version})
		}
		if s.rules >= 1 {
			if err := s.checkReplace(cs, &c); err != nil {
				return encodeError(err)
			}
		}
		prev := cs.c
		c.Number, c.Version = cs.c.Number, cs.c.Version+1
		cs.setCampaign(&c, canon)
		if s.rules >= 1 {
			cs.remapTasks(prev.Tasks)
		}
		cs.allowUse(prev)
	} else {
		if len(s.camps) >= math.MaxUint16 {
			return encodeError(fmt.Errorf("%w: campaign numbers", ErrExhausted))
		}
		c.Number, c.Version = uint16(len(s.camps)+1), 1
		cs := &campState{}
		cs.setCampaign(&c, canon)
		s.camps = append(s.camps, cs)
		s.campIdx[c.ID] = c.Number
	}
	*changed = true
	s.computeNextEnd()
	return encodePut(PutResult{ID: c.ID, Number: c.Number, Version: c.Version})
}

// Rules returns the rules level in force (see RulesLevel).
func (l *Ledger) Rules() uint8 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.rules
}

// CheckPut reports whether a PutCampaign of c would be refused, judged
// against this replica's state: an invalid campaign (ErrInvalidCampaign) or a
// replacement the ledger refuses (ErrConflict: see Campaign). Call it before
// proposing the command so that the caller gets the error at once; the
// command checks again when it is applied (this replica may lag the log, and
// a campaign past its end is settled by the first entry after ends_at).
func (l *Ledger) CheckPut(c Campaign) error {
	c.normalize()
	if err := c.Validate(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(c.ID)
	if cs == nil || bytes.Equal(c.canonical(), cs.canon) {
		return nil
	}
	return l.st.checkReplace(cs, &c)
}

// checkReplace refuses (ErrConflict) a replacement of cs by c that would move
// existing inviters to another variant or reopen a settled campaign.
func (s *state) checkReplace(cs *campState, c *Campaign) error {
	old := cs.c
	if cs.settled != nil && c.EndsAt.After(old.EndsAt) {
		return fmt.Errorf("%w: campaign %q was settled at %s: ends_at cannot move later (%s to %s); create a new campaign instead",
			ErrConflict, c.ID, cs.settled.At.Format(time.RFC3339), old.EndsAt.Format(time.RFC3339), c.EndsAt.Format(time.RFC3339))
	}
	for i := range min(len(old.Variants), len(c.Variants)) {
		if o, n := old.Variants[i].Name, c.Variants[i].Name; o != n {
			return fmt.Errorf("%w: variants[%d] is %q in campaign %q, %q in the replacement: inviters and their share codes carry the variant's position, so existing variants keep their names and order (add new variants at the end)",
				ErrConflict, i, o, c.ID, n)
		}
	}
	// A position freed by removing variants from the end may be filled
	// again only while no inviter holds it (they would change scheme).
	if len(c.Variants) > len(old.Variants) && len(cs.variants) > len(old.Variants) {
		for i := range cs.inviters {
			if k := int(cs.inviters[i].variant); k > len(old.Variants) && k <= len(c.Variants) {
				return fmt.Errorf("%w: variants[%d] (%q) of campaign %q: that position belonged to a removed variant that inviters still hold, so it cannot be reused",
					ErrConflict, k-1, c.Variants[k-1].Name, c.ID)
			}
		}
	}
	return nil
}

// remapTasks moves the inviters' done-task bits from the positions of the
// previous tasks to the positions of the same names in the current ones; a
// task that is no longer listed loses its bit (added back, it counts as a new
// task). Nothing moves when the names keep their positions.
func (cs *campState) remapTasks(prev []Task) {
	tasks := cs.c.Tasks
	same := true
	for i, t := range prev {
		if i >= len(tasks) || tasks[i].Name != t.Name {
			same = false
			break
		}
	}
	if same {
		return
	}
	var to [maxTasks]int // new position+1 of the task at each previous position; 0 gone
	for i, t := range prev {
		to[i] = slices.IndexFunc(tasks, func(n Task) bool { return n.Name == t.Name }) + 1
	}
	for p := range cs.inviters {
		inv := &cs.inviters[p]
		var bits uint8
		for i := range prev {
			if inv.tasks&(1<<i) != 0 && to[i] > 0 {
				bits |= 1 << (to[i] - 1)
			}
		}
		inv.tasks = bits
	}
}

func (cs *campState) setCampaign(c *Campaign, canon []byte) {
	cs.c, cs.canon, cs.fraud = c, canon, c.Fraud.effective()
	for len(cs.variants) < len(c.Variants) {
		cs.variants = append(cs.variants, varCounters{})
	}
}

func (s *state) computeNextEnd() {
	s.nextEnd = math.MaxInt64
	for _, cs := range s.camps {
		if cs.settled == nil {
			s.nextEnd = min(s.nextEnd, cs.c.EndsAt.UnixNano())
		}
	}
}

func (s *state) findInviter(cs *campState, name string) (uint32, bool) {
	return cs.invIdx.lookup(hashKey(name), func(p uint32) bool { return s.names.eq(cs.inviters[p].name, name) })
}

// addInviter appends a new inviter and returns its position (number-1).
func (s *state) addInviter(cs *campState, name string) (uint32, error) {
	if len(cs.inviters) >= math.MaxUint32-1 {
		return 0, fmt.Errorf("%w: inviter numbers of campaign %q", ErrExhausted, cs.c.ID)
	}
	p := uint32(len(cs.inviters))
	cs.inviters = append(cs.inviters, inviter{name: s.names.add(name), variant: pickVariant(cs.c, name)})
	cs.invIdx.insert(hashKey(name), p, func(q uint32) uint64 { return hashKey(s.names.bytes(cs.inviters[q].name)) })
	return p, nil
}

// pickVariant returns the 1-based variant of an inviter: FNV-1a (64 bit) of
// the campaign id, a zero byte and the inviter name, modulo the total weight,
// over the variants' cumulative weights in order. 0 when there are none.
func pickVariant(c *Campaign, name string) uint8 {
	if len(c.Variants) == 0 {
		return 0
	}
	var total uint64
	for _, v := range c.Variants {
		total += uint64(v.Weight)
	}
	h := fnvAdd(fnvOffset64, c.ID)
	h *= fnvPrime64 // FNV-1a of a zero separator byte: h^0 is h
	h = fnvAdd(h, name)
	x := h % total
	for i, v := range c.Variants {
		if x < uint64(v.Weight) {
			return uint8(i + 1)
		}
		x -= uint64(v.Weight)
	}
	return uint8(len(c.Variants))
}

func (s *state) issueLink(v IssueLink, at time.Time) []byte {
	cs := s.campaign(v.Campaign)
	if cs == nil {
		return encodeError(fmt.Errorf("%w: campaign %q", ErrNotFound, v.Campaign))
	}
	p, ok := s.findInviter(cs, v.Inviter)
	if !ok {
		var err error
		if p, err = s.addInviter(cs, v.Inviter); err != nil {
			return encodeError(err)
		}
	}
	inv := &cs.inviters[p]
	isNew := inv.firstLink == 0
	if isNew {
		inv.firstLink = unixSeconds(at)
		cs.st.links++
		if k := int(inv.variant); k > 0 && k <= len(cs.variants) {
			cs.variants[k-1].links++
		}
	}
	return encodeLink(LinkResult{InviterNumber: p + 1, Variant: inv.variant, New: isNew})
}

func (s *state) setSegments(v SetSegments) []byte {
	if v.Campaign != "" && s.campaign(v.Campaign) == nil {
		return encodeError(fmt.Errorf("%w: campaign %q", ErrNotFound, v.Campaign))
	}
	k := segKey{v.Campaign, v.Inviter}
	segs := slices.Compact(slices.Sorted(slices.Values(v.Segments)))
	if len(segs) == 0 {
		delete(s.segs, k)
	} else {
		s.segs[k] = segs
	}
	return encodeEmpty(CmdSetSegments)
}

// inSegments reports whether the inviter has one of the campaign's segments
// (its segments for all campaigns and for this one, together).
func (s *state) inSegments(c *Campaign, name string) bool {
	for _, k := range [2]segKey{{"", name}, {c.ID, name}} {
		for _, g := range s.segs[k] {
			if slices.Contains(c.Segments, g) {
				return true
			}
		}
	}
	return false
}

func (s *state) joinTeam(v JoinTeam) []byte {
	cs := s.campaign(v.Campaign)
	if cs == nil {
		return encodeError(fmt.Errorf("%w: campaign %q", ErrNotFound, v.Campaign))
	}
	if cs.c.Teams == nil {
		return encodeError(fmt.Errorf("%w: campaign %q has no teams", ErrConflict, v.Campaign))
	}
	if cs.settled != nil {
		return encodeError(fmt.Errorf("%w: campaign %q is settled", ErrConflict, v.Campaign))
	}
	ti := slices.IndexFunc(cs.teams, func(t team) bool { return t.name == v.Team })
	p, ok := s.findInviter(cs, v.Inviter)
	if ok {
		if cur := int(cs.inviters[p].team); cur != 0 {
			if cur == ti+1 {
				return encodeEmpty(CmdJoinTeam)
			}
			return encodeError(fmt.Errorf("%w: inviter %q is already in team %q", ErrConflict, v.Inviter, cs.teams[cur-1].name))
		}
	}
	if ti < 0 && len(cs.teams) >= math.MaxUint16 {
		return encodeError(fmt.Errorf("%w: teams of campaign %q", ErrExhausted, v.Campaign))
	}
	if !ok {
		var err error
		if p, err = s.addInviter(cs, v.Inviter); err != nil {
			return encodeError(err)
		}
	}
	if ti < 0 {
		ti = len(cs.teams)
		cs.teams = append(cs.teams, team{name: v.Team})
	}
	cs.inviters[p].team = uint16(ti + 1)
	cs.teams[ti].members++
	return encodeEmpty(CmdJoinTeam)
}
